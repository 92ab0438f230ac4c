package sagatest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// shop is the system the test sagas act on: stock, holds, an account and
// shipments, in memory. Its bugs switch on deliberate mistakes.
type shop struct {
	mu        sync.Mutex
	stock     map[string]int
	holds     map[string]string // idempotency key → item
	balance   int
	charges   map[string]int    // idempotency key → amount
	shipments map[string]string // idempotency key → address
	bugs      bugs
}

type bugs struct {
	// chargeTwice: charge is not idempotent (a repeat charges again).
	chargeTwice bool
	// halfReserve: reserve is not atomic: it takes the item from stock,
	// then fails to record the hold when the card is declined.
	halfReserve bool
	// undoKeepsStock: the undo of reserve drops the hold but does not put
	// the item back: it does not restore the state.
	undoKeepsStock bool
	// undoRestocksTwice: the undo of reserve puts the item back every time
	// it runs: it is not idempotent.
	undoRestocksTwice bool
	// refundFails: the undo of charge fails for good.
	refundFails bool
}

type order struct {
	Item    string `json:"item"`
	Amount  int    `json:"amount"`
	Card    string `json:"card"`
	Address string `json:"address"`
}

// snapshot is what the hooks capture: counts, not keys (saga ids differ
// from run to run).
type snapshot struct {
	Stock     map[string]int
	Holds     int
	Balance   int
	Charges   int
	Shipments int
}

func (s *shop) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stock = map[string]int{"lamp": 3}
	s.holds, s.charges, s.shipments = map[string]string{}, map[string]int{}, map[string]string{}
	s.balance = 100
}

func (s *shop) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshot{Stock: maps.Clone(s.stock), Holds: len(s.holds), Balance: s.balance, Charges: len(s.charges), Shipments: len(s.shipments)}
}

func (s *shop) hooks() Hooks {
	return Hooks{
		Before: func(testing.TB) any { s.reset(); return s.snapshot() },
		After:  func(testing.TB) any { return s.snapshot() },
	}
}

func orderSaga() *saga.Definition {
	return saga.New("order").
		Then(saga.Action("reserve", "shop.reserve").Undo("shop.release")).
		Then(saga.Action("charge", "shop.charge").Undo("shop.refund")).
		Then(saga.Action("ship", "shop.ship").Undo("shop.recall")).
		MustBuild()
}

func lamp() any { return order{Item: "lamp", Amount: 30, Card: "ok", Address: "1 Main St"} }

func (s *shop) register(k *Kit) {
	k.Register("shop.reserve", s.reserve, s.release)
	k.Register("shop.charge", s.charge, s.refund)
	k.Register("shop.ship", s.ship, s.recall)
}

func (s *shop) reserve(_ context.Context, req *participant.Request) (any, error) {
	var o order
	if err := req.DecodeParams(&o); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if item, ok := s.holds[req.IdempotencyKey]; ok {
		return map[string]string{"item": item}, nil
	}
	if s.stock[o.Item] == 0 {
		return nil, participant.Permanent(fmt.Errorf("%s is out of stock", o.Item))
	}
	if s.bugs.halfReserve {
		s.stock[o.Item]--
		if o.Card == "declined" {
			return nil, participant.Permanent(errors.New("deposit declined"))
		}
		s.holds[req.IdempotencyKey] = o.Item
		return map[string]string{"item": o.Item}, nil
	}
	if o.Card == "declined" {
		return nil, participant.Permanent(errors.New("deposit declined"))
	}
	s.stock[o.Item]--
	s.holds[req.IdempotencyKey] = o.Item
	return map[string]string{"item": o.Item}, nil
}

func (s *shop) release(_ context.Context, req *participant.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bugs.undoRestocksTwice {
		var out struct{ Item string }
		if err := req.DecodeOutput(&out); err != nil {
			return nil, err
		}
		delete(s.holds, req.IdempotencyKey)
		s.stock[out.Item]++
		return nil, nil
	}
	item, ok := s.holds[req.IdempotencyKey]
	if !ok {
		return nil, nil // released already, or never held
	}
	delete(s.holds, req.IdempotencyKey)
	if !s.bugs.undoKeepsStock {
		s.stock[item]++
	}
	return nil, nil
}

func (s *shop) charge(_ context.Context, req *participant.Request) (any, error) {
	var o order
	if err := req.DecodeParams(&o); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.charges[req.IdempotencyKey]; ok && !s.bugs.chargeTwice {
		return map[string]int{"charged": o.Amount}, nil
	}
	s.balance -= o.Amount
	s.charges[req.IdempotencyKey] = o.Amount
	return map[string]int{"charged": o.Amount}, nil
}

func (s *shop) refund(_ context.Context, req *participant.Request) (any, error) {
	if s.bugs.refundFails {
		return nil, participant.Permanent(errors.New("the bank refuses refunds"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if amount, ok := s.charges[req.IdempotencyKey]; ok {
		s.balance += amount
		delete(s.charges, req.IdempotencyKey)
	}
	return nil, nil
}

func (s *shop) ship(_ context.Context, req *participant.Request) (any, error) {
	var o order
	if err := req.DecodeParams(&o); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shipments[req.IdempotencyKey] = o.Address
	return map[string]string{"to": o.Address}, nil
}

func (s *shop) recall(_ context.Context, req *participant.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.shipments, req.IdempotencyKey)
	return nil, nil
}

// recorder stands in for the test a kit reports to: it keeps what the
// checks report instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) report() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n---\n")
}

// shopKit is a kit reporting to t, with a correct shop registered.
func shopKit(t *testing.T) (*Kit, *shop) {
	k := New(t)
	s := &shop{}
	s.reset()
	s.register(k)
	return k, s
}

// buggyKit is a kit reporting to a recorder, with a shop that has bugs.
func buggyKit(t *testing.T, b bugs) (*Kit, *shop, *recorder) {
	rec := &recorder{TB: t}
	k := New(rec)
	s := &shop{bugs: b}
	s.reset()
	s.register(k)
	return k, s, rec
}

// expect checks that the recorder got one report or more, each naming the
// check, and containing every wanted fragment somewhere.
func expect(t *testing.T, rec *recorder, check string, want ...string) {
	t.Helper()
	got := rec.report()
	if got == "" {
		t.Fatalf("%s reported nothing; want a failure", check)
	}
	for _, e := range rec.errors {
		if !strings.HasPrefix(e, check+": ") {
			t.Errorf("report does not start with %q:\n%s", check, e)
		}
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("report lacks %q:\n%s", w, got)
		}
	}
	t.Logf("%s reported, as it should:\n%s", check, got)
}

func TestCorrectSagaPassesEveryCheck(t *testing.T) {
	t.Parallel()
	k, s := shopKit(t)
	def := orderSaga()
	k.ActionsSucceedIdempotently(def, lamp, s.hooks())
	k.ActionFailureCanUnwind(def, lamp, s.hooks())
	k.ActionFailureCanUnwindIdempotently(def, lamp, s.hooks())
	k.CrashAtEveryEvent(def, lamp, s.hooks())
	k.NoStuckUndos()
	// 2 runs + 4 + 4 + (1 + one per log message).
	if n := len(k.Sagas()); n < 2+4+4+1+4 {
		t.Errorf("the checks ran %d sagas", n)
	}
}

func TestNonIdempotentActionIsCaught(t *testing.T) {
	t.Parallel()
	k, s, rec := buggyKit(t, bugs{chargeTwice: true})
	k.ActionsSucceedIdempotently(orderSaga(), lamp, s.hooks())
	expect(t, rec, "ActionsSucceedIdempotently", "an action is not idempotent", `node "charge": with its action run twice`,
		`-   "Balance": 70,`, `+   "Balance": 40,`)
	if strings.Contains(rec.report(), `node "reserve"`) || strings.Contains(rec.report(), `node "ship"`) {
		t.Errorf("an idempotent node was blamed:\n%s", rec.report())
	}
	// The unwinding checks do not run actions twice: they pass.
	rec.errors = nil
	k.ActionFailureCanUnwind(orderSaga(), lamp, s.hooks())
	if got := rec.report(); got != "" {
		t.Errorf("ActionFailureCanUnwind reported:\n%s", got)
	}
}

func TestNonAtomicActionIsCaught(t *testing.T) {
	t.Parallel()
	k, s, rec := buggyKit(t, bugs{halfReserve: true})
	declined := func() any { return order{Item: "lamp", Amount: 30, Card: "declined", Address: "1 Main St"} }
	k.ActionFailureCanUnwind(orderSaga(), declined, s.hooks())
	expect(t, rec, "ActionFailureCanUnwind",
		`without an injected failure, saga`, `unwound because node "reserve" failed on its own (permanent: deposit declined), and the state after unwinding differs`,
		`an action that fails must change nothing`, `-     "lamp": 3`, `+     "lamp": 2`,
		`failure injected at node "charge" (saga`, `the state after unwinding differs from before; no undo ran`)
	// The atomic action leaves nothing behind: the check only says that
	// these params hide the nodes after it.
	k2, s2, rec2 := buggyKit(t, bugs{})
	k2.ActionFailureCanUnwind(orderSaga(), declined, s2.hooks())
	expect(t, rec2, "ActionFailureCanUnwind", "cannot inject failures into the nodes after it")
	if got := rec2.report(); len(rec2.errors) != 1 || strings.Contains(got, "differs") {
		t.Errorf("the atomic action was reported:\n%s", got)
	}
}

func TestUndoThatDoesNotRestoreIsCaught(t *testing.T) {
	t.Parallel()
	k, s, rec := buggyKit(t, bugs{undoKeepsStock: true})
	k.ActionFailureCanUnwind(orderSaga(), lamp, s.hooks())
	expect(t, rec, "ActionFailureCanUnwind",
		`failure injected at node "charge"`, `failure injected at node "ship"`, "the state after unwinding differs from before",
		"undos ran for reserve", `+     "lamp": 2`)
	if strings.Contains(rec.report(), `failure injected at node "reserve"`) {
		t.Errorf("the run that never reserved was reported:\n%s", rec.report())
	}
}

func TestUndoThatIsNotIdempotentIsCaught(t *testing.T) {
	t.Parallel()
	k, s, rec := buggyKit(t, bugs{undoRestocksTwice: true})
	k.ActionFailureCanUnwind(orderSaga(), lamp, s.hooks())
	if got := rec.report(); got != "" {
		t.Fatalf("with undos run once, the check should pass:\n%s", got)
	}
	k.ActionFailureCanUnwindIdempotently(orderSaga(), lamp, s.hooks())
	expect(t, rec, "ActionFailureCanUnwindIdempotently", `failure injected at node "charge"`, `+     "lamp": 4`)
}

func TestStuckUndoIsReported(t *testing.T) {
	t.Parallel()
	k, s, rec := buggyKit(t, bugs{refundFails: true})
	k.ActionFailureCanUnwind(orderSaga(), lamp, s.hooks())
	expect(t, rec, "ActionFailureCanUnwind", `failure injected at node "ship": saga`,
		`is stuck: the undo of node "charge" failed (permanent: the bank refuses refunds)`)
	rec.errors = nil
	k.NoStuckUndos()
	expect(t, rec, "NoStuckUndos", `is stuck: the undo of node "charge" failed (permanent: the bank refuses refunds)`)
}

func TestBeforeMustReset(t *testing.T) {
	t.Parallel()
	k, s, rec := buggyKit(t, bugs{})
	noReset := Hooks{Before: func(testing.TB) any { return s.snapshot() }}
	k.ActionsSucceedIdempotently(orderSaga(), lamp, noReset)
	expect(t, rec, "ActionsSucceedIdempotently", "Before returned a different state for a later run", "reset the system in Before")
}

func TestCrashAtEveryEventRestartsAtEveryMessage(t *testing.T) {
	t.Parallel()
	k, s := shopKit(t)
	// With an injected failure the run unwinds: crashes while unwinding too.
	def := orderSaga()
	k.CrashAtEveryEvent(def, lamp, s.hooks())
	ref, err := k.Client().Status(context.Background(), k.Sagas()[0])
	if err != nil {
		t.Fatal(err)
	}
	// One coordinator at the start, and one more per crash.
	if want := 1 + messages(ref); k.incarns != want {
		t.Errorf("%d coordinators ran; want %d (one crash per log message)", k.incarns, want)
	}
	for _, id := range k.Sagas() {
		st, err := k.Client().Status(context.Background(), id)
		if err != nil || st.Status != client.StatusSucceeded {
			t.Errorf("saga %s: %v %v", id, st.Status, err)
		}
	}
}

func TestRunWithFaults(t *testing.T) {
	t.Parallel()
	k, s := shopKit(t)
	got := k.Run(orderSaga(), lamp(), events.Fault{Node: "ship", FailAction: true}, events.Fault{Node: "charge", UndoRepeat: 3})
	if got.Status != client.StatusUnwound || got.FailedNode != "ship" {
		t.Fatalf("saga %s, failed node %q", got.Status, got.FailedNode)
	}
	if n, _ := got.Node("charge"); n.UndoAttempt != 3 {
		t.Errorf("charge undone in %d attempts, want 3 (repeated)", n.UndoAttempt)
	}
	if snap := s.snapshot(); snap.Balance != 100 || snap.Stock["lamp"] != 3 {
		t.Errorf("state after unwinding: %+v", snap)
	}
}

// sagatest links package testing: only tests may import it.
func TestOnlyTestsImportSagatest(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Deps " "}}`, "github.com/jetsaga/jetsaga/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, ": ")
		if pkg != "github.com/jetsaga/jetsaga/sagatest" && strings.Contains(" "+deps+" ", " github.com/jetsaga/jetsaga/sagatest ") {
			t.Errorf("%s imports sagatest outside its tests", pkg)
		}
	}
}

// An injected delay holds the request back until node.started's
// not_before: the participant never sees it earlier.
func TestInjectedDelayHoldsTheRequestBack(t *testing.T) {
	t.Parallel()
	k := New(t)
	var mu sync.Mutex
	seen := map[string]time.Time{}
	record := func(_ context.Context, req *participant.Request) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		seen[req.Node] = time.Now()
		return nil, nil
	}
	k.Register("clock.read", record, nil)
	def := saga.New("delayed").Then(saga.Action("a", "clock.read")).Then(saga.Action("b", "clock.read")).MustBuild()
	s := k.Run(def, nil, events.Fault{Node: "b", Delay: saga.Duration(300 * time.Millisecond)})
	if s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}
	evs, err := k.Client().Events(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	var notBefore time.Time
	for _, e := range evs {
		if d, ok := e.Data.(*events.NodeStarted); ok && d.Node == "b" {
			notBefore = d.NotBefore
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if notBefore.IsZero() || seen["b"].Before(notBefore) {
		t.Fatalf("b's request arrived at %s, not before %s", seen["b"].Format(time.RFC3339Nano), notBefore.Format(time.RFC3339Nano))
	}
}
