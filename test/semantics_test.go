package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// order: reserve → approval (await) → capture (pivot, when amount > 0) → ship.
func orderDef(t *testing.T, prefix string) *saga.Definition {
	t.Helper()
	def, err := saga.New("order").
		Then(saga.Action("reserve", prefix+".reserve").Undo(prefix + ".release")).
		Then(saga.Await("approval", "order.approved").Timeout(time.Minute)).
		Then(saga.Action("capture", prefix+".capture").Pivot().When(`params.amount > 0 && outputs.approval.ok`)).
		Then(saga.Action("ship", prefix+".ship")).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func (e *env) waitNode(id, node, state string) *client.Saga {
	e.t.Helper()
	s, err := e.cl.WaitFor(ctxT(e.t), id, func(s *client.Saga) bool { n, _ := s.Node(node); return n.State == state })
	if err != nil {
		e.t.Fatalf("wait for %s of saga %s to be %s: %v", node, id, state, err)
	}
	return s
}

// finished waits for the saga to end (Wait returns for a saga waiting for
// an operator too, which it is just before an operator's command lands).
func (e *env) finished(id string) *client.Saga {
	e.t.Helper()
	s, err := e.cl.WaitFor(ctxT(e.t), id, func(s *client.Saga) bool { return s.Finished() })
	if err != nil {
		e.t.Fatalf("wait for saga %s to finish: %v", id, err)
	}
	return s
}

func TestSignalsDriveAwaitNodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	def := orderDef(t, "sig")

	id, err := e.cl.Start(ctx, def, map[string]any{"amount": 10})
	if err != nil {
		t.Fatal(err)
	}
	e.waitNode(id, "approval", "started")
	for _, c := range []struct{ node, want string }{
		{"nope", `has no node "nope" (its await nodes: approval)`},
		{"reserve", `node "reserve" of saga ` + id + ` is a action node; signals are for await nodes`},
	} {
		err := e.cl.Signal(ctx, id, c.node, nil)
		if !errors.Is(err, client.ErrSignalRefused) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("signal for %s: %v, want %q", c.node, err, c.want)
		}
	}
	if err := e.cl.Signal(ctx, id, "approval", map[string]any{"ok": true, "by": "ann"}, client.WithSignalID("s-1"), client.WithSender("ann")); err != nil {
		t.Fatal(err)
	}
	// Sent again (a retry): taken once, and not an error.
	if err := e.cl.Signal(ctx, id, "approval", map[string]any{"ok": true, "by": "ann"}, client.WithSignalID("s-1")); err != nil {
		t.Fatalf("duplicate signal: %v", err)
	}
	s := e.wait(id)
	if s.Status != client.StatusSucceeded || s.Pivot != "capture" {
		t.Fatalf("saga %s, pivot %q", s.Status, s.Pivot)
	}
	if n, _ := s.Node("approval"); string(n.Output) != `{"by":"ann","ok":true}` || n.Signal == nil || n.Signal.Sender != "ann" {
		t.Fatalf("approval output %s signal %+v", n.Output, n.Signal)
	}
	// A retry of the signal taken is fine even once the saga has finished;
	// another signal is refused.
	if err := e.cl.Signal(ctx, id, "approval", map[string]any{"ok": true, "by": "ann"}, client.WithSignalID("s-1")); err != nil {
		t.Fatalf("duplicate signal after the saga finished: %v", err)
	}
	err = e.cl.Signal(ctx, id, "approval", nil)
	if !errors.Is(err, client.ErrSignalRefused) || !strings.Contains(err.Error(), "has finished") {
		t.Fatalf("signal for a finished saga: %v", err)
	}
	if err := e.cl.Signal(ctx, "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b", "approval", nil); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("signal for an unknown saga: %v", err)
	}

	// Early: the signal comes while reserve is still running; a false
	// condition skips capture.
	id, err = e.cl.Start(ctx, def, map[string]any{"amount": 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cl.Signal(ctx, id, "approval", map[string]any{"ok": true}); err != nil {
		t.Fatal(err)
	}
	s = e.wait(id)
	if n, _ := s.Node("capture"); s.Status != client.StatusSucceeded || n.State != "skipped" || s.Pivot != "" {
		t.Fatalf("saga %s, capture %s, pivot %q", s.Status, n.State, s.Pivot)
	}

	// A rejection fails the node; the saga unwinds reserve.
	id, err = e.cl.Start(ctx, def, map[string]any{"amount": 5})
	if err != nil {
		t.Fatal(err)
	}
	e.waitNode(id, "approval", "started")
	if err := e.cl.Reject(ctx, id, "approval", "over budget"); err != nil {
		t.Fatal(err)
	}
	s = e.wait(id)
	if n, _ := s.Node("approval"); s.Status != client.StatusUnwound || n.Error == nil || n.Error.Kind != events.ErrorRejected {
		t.Fatalf("saga %s, approval %+v", s.Status, n)
	}
	if r, _ := s.Node("reserve"); r.State != "undo_finished" {
		t.Fatalf("reserve %s", r.State)
	}
}

func TestPauseOnFailureRetrySkipAbort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var fails atomic.Int32
	startRaw(t, e.js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if req.Node == "b" && req.Op == events.OpDo {
			var p struct{ Fixed bool }
			_ = json.Unmarshal(req.Params, &p)
			if !p.Fixed {
				fails.Add(1)
				return nil, &events.Error{Kind: events.ErrorPermanent, Message: "quota exceeded"}, true
			}
		}
		return succeedAll(req)
	})
	ctx := ctxT(t)
	def := saga.New("held").OnFailure(saga.Pause).
		Then(saga.Action("a", "held.a").Undo("held.ua")).
		Then(saga.Action("b", "held.b")).
		Then(saga.Action("c", "held.c")).MustBuild()
	start := func() string {
		id, err := e.cl.Start(ctx, def, map[string]any{"fixed": false})
		if err != nil {
			t.Fatal(err)
		}
		if s := e.wait(id); s.Status != client.StatusWaiting || fmt.Sprint(s.Held) != "[b]" {
			t.Fatalf("saga %s held %v", s.Status, s.Held)
		}
		return id
	}

	id := start()
	// The coordinator counts the saga once it has applied the decision the
	// log already shows: poll.
	counts := func(waiting int64) {
		t.Helper()
		natstest.Eventually(t, 10*time.Second, func() error {
			if st := e.coord.Status(); st.Waiting != waiting || st.Stuck != 0 {
				return fmt.Errorf("coordinator status: %d waiting, %d stuck; want %d, 0", st.Waiting, st.Stuck, waiting)
			}
			return nil
		})
	}
	counts(1)
	if err := e.cl.Retry(ctx, id, "b", "quota raised", json.RawMessage(`{"fixed":true}`)); err != nil {
		t.Fatal(err)
	}
	if s := e.finished(id); s.Status != client.StatusSucceeded {
		t.Fatalf("after retry: %s", s.Status)
	}
	counts(0)

	id = start()
	if err := e.cl.Skip(ctx, id, "b", map[string]any{"manual": true}, "done by hand"); err != nil {
		t.Fatal(err)
	}
	s := e.finished(id)
	if n, _ := s.Node("b"); s.Status != client.StatusSucceeded || n.SkippedBy != "done by hand" || string(n.Output) != `{"manual":true}` {
		t.Fatalf("after skip: %s, b %+v", s.Status, n)
	}

	id = start()
	if err := e.cl.Abort(ctx, id, "customer cancelled"); err != nil {
		t.Fatal(err)
	}
	if s := e.finished(id); s.Status != client.StatusUnwound {
		t.Fatalf("after abort: %s", s.Status)
	}
}

func TestDeadlineUnwindsASagaThatTakesTooLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	// A deadline of 6 s is armed as a message schedule (durable), not in
	// memory; the await never gets its signal.
	def := saga.New("late").Deadline(6*time.Second, saga.Unwind).
		Then(saga.Action("a", "late.a").Undo("late.ua")).
		Then(saga.Await("w", "never")).MustBuild()
	id, err := e.cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The coordinator that armed the deadline stops; another takes the
	// saga over, and the deadline (a message schedule) still fires.
	e.waitNode(id, "w", "started")
	if err := e.coord.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	e.startCoordinator("c2")
	s := e.finished(id)
	if s.Status != client.StatusUnwound || s.UnwindReason != string(events.UnwindDeadline) || !s.DeadlinePassed {
		t.Fatalf("saga %s, reason %q, deadline passed %v", s.Status, s.UnwindReason, s.DeadlinePassed)
	}
}

// With no coordinator to answer, a signal waits in JETSAGA_WORK as a
// command; the next coordinator takes it once, though it was sent twice.
func TestSignalWithNoCoordinatorWaitsForOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	def := saga.New("later").Then(saga.Await("go", "go")).Then(saga.Action("a", "later.a")).MustBuild()
	id, err := e.cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.waitNode(id, "go", "started")
	if err := e.coord.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.cl.Signal(ctx, id, "go", "now", client.WithSignalID("only-once")); err != nil {
			t.Fatal(err)
		}
	}
	e.startCoordinator("c2")
	s := e.finished(id)
	if n, _ := s.Node("go"); s.Status != client.StatusSucceeded || string(n.Output) != `"now"` {
		t.Fatalf("saga %s, go %+v", s.Status, n)
	}
	var taken int
	for _, ev := range s.Timeline {
		if ev.Type == "signal.received" {
			taken++
		}
	}
	if taken != 1 {
		t.Fatalf("%d signals taken, want 1", taken)
	}
}

// A participant in another language sends a signal as the protocol says:
// a CloudEvent in a core NATS request, answered with JSON.
func TestSignalOverPlainNATS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	def := saga.New("plain").Then(saga.Await("go", "go")).MustBuild()
	id, err := e.cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.waitNode(id, "go", "started")
	subject := fmt.Sprintf("jetsaga.signal.%d", streams.Partition(id, e.topo.Partitions))
	send := func(node string) string {
		body := fmt.Sprintf(`{"specversion":"1.0","id":"sig-7","source":"/other/lang","type":"io.jetsaga.command.signal.v1",
			"subject":%q,"datacontenttype":"application/json","data":{"node":%q,"data":{"from":"node.js"}}}`, id, node)
		m, err := e.nc.Request(subject, []byte(body), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return string(m.Data)
	}
	if got := send("nope"); !strings.Contains(got, `"error"`) || !strings.Contains(got, `the saga has no node \"nope\"`) {
		t.Fatalf("signal for an unknown node answered %s", got)
	}
	if got := send("go"); got != `{"ok":true}` {
		t.Fatalf("signal answered %s", got)
	}
	// A saga nobody started: refused, and the answer says so.
	other := "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b"
	body := fmt.Sprintf(`{"specversion":"1.0","id":"sig-8","source":"/other/lang","type":"io.jetsaga.command.signal.v1",
		"subject":%q,"datacontenttype":"application/json","data":{"node":"go"}}`, other)
	m, err := e.nc.Request(fmt.Sprintf("jetsaga.signal.%d", streams.Partition(other, e.topo.Partitions)), []byte(body), 10*time.Second)
	if err != nil || !strings.Contains(string(m.Data), "no saga "+other+" in flight") {
		t.Fatalf("signal for an unknown saga: %v %s", err, m.Data)
	}
	if s := e.finished(id); s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}
}
