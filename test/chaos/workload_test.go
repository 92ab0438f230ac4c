//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// partitions of the topology every coordinator runs with.
const partitions = 16

// nodeNames are the nodes of the workload's saga: root, then x, y and z in
// parallel, then join.
var nodeNames = []string{"root", "x", "y", "z", "join"}

// action is the action (and subject) of a node; its undo comes on the
// same subject.
func action(node string) string { return "chaos." + node }

// definition is the saga every test runs. Retries are quick so that
// transient failures cost little; attempts are many, and their timeout
// long, so that no chaos short of a lost request makes an attempt time out
// for good (which would unwind a saga meant to succeed).
func definition() *saga.Definition {
	retry := saga.RetryPolicy{MaxAttempts: 6, InitialDelay: saga.Duration(100 * time.Millisecond), MaxDelay: saga.Duration(2 * time.Second), Multiplier: 2, Jitter: 0.2}
	node := func(n string) saga.NodeSpec {
		return saga.Action(n, action(n)).Undo(action(n) + "_undo").Timeout(15 * time.Second).Retry(retry).UndoRetry(retry)
	}
	return saga.New("chaos.fan").
		Then(node("root")).
		Parallel(node("x"), node("y"), node("z")).
		Then(node("join")).
		MustBuild()
}

// plan is what is to happen to one saga. It is the saga's params, so the
// participants know which of their calls are to fail.
type plan struct {
	N int `json:"n"`
	// Fail is the node whose action fails for good, so the saga unwinds
	// ("" for none).
	Fail string `json:"fail,omitempty"`
	// Flaky is a node whose action fails transiently FlakyTimes times
	// before it succeeds.
	Flaky      string `json:"flaky,omitempty"`
	FlakyTimes int    `json:"flaky_times,omitempty"`
	// FlakyUndo is a node whose undo fails transiently once.
	FlakyUndo string `json:"flaky_undo,omitempty"`
	// Twice: a second start command for the saga is sent, as a client
	// retrying from elsewhere would; it must not start a second run.
	Twice bool `json:"twice,omitempty"`
}

// wantStatus is the outcome the plan calls for.
func (p plan) wantStatus() string {
	if p.Fail != "" {
		return client.StatusUnwound
	}
	return client.StatusSucceeded
}

type planned struct {
	id   string
	plan plan
}

// makePlans plans n sagas: about a third fail for good at a random node,
// a third of the actions are flaky, some undos too, and some sagas are
// started twice.
func makePlans(rng *rand.Rand, n int) []planned {
	pick := func() string { return nodeNames[rng.IntN(len(nodeNames))] }
	out := make([]planned, n)
	for i := range out {
		p := plan{N: i}
		if rng.IntN(3) == 0 {
			p.Fail = pick()
			if rng.IntN(3) == 0 {
				p.FlakyUndo = pick()
			}
		}
		if rng.IntN(3) == 0 {
			p.Flaky, p.FlakyTimes = pick(), 1+rng.IntN(2)
		}
		p.Twice = rng.IntN(8) == 0
		out[i] = planned{id: uuid.NewString(), plan: p}
	}
	return out
}

// ledger is the participants' side effects by idempotency key: what the
// services behind them would have done. They are idempotent services: an
// effect applied again while it is live changes nothing.
type ledger struct {
	mu sync.Mutex
	fx map[string]*effect
}

type effect struct {
	// runs counts successful runs of the action's handler: more than one
	// means the idempotency barrier let a repeat through.
	runs int
	// applied counts the times the effect came into being: more than one
	// means it came back after its undo (an action hanging after its
	// compensation).
	applied int
	live    bool
	undos   int // runs of the undo handler
	undone  bool
}

func newLedger() *ledger { return &ledger{fx: map[string]*effect{}} }

func (l *ledger) get(key string) *effect {
	e := l.fx[key]
	if e == nil {
		e = &effect{}
		l.fx[key] = e
	}
	return e
}

func (l *ledger) do(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(key)
	e.runs++
	if !e.live {
		e.applied++
		e.live = true
	}
}

func (l *ledger) undo(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(key)
	e.undos++
	e.live, e.undone = false, true
}

// saga returns the effects of one saga's nodes, by node name.
func (l *ledger) saga(id string) map[string]effect {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]effect{}
	for _, n := range nodeNames {
		if e := l.fx[id+":"+n]; e != nil {
			out[n] = *e
		}
	}
	return out
}

// startParticipants runs n participants in the test process, each with
// its own connection to url, serving every node's action with the Go SDK
// (barrier on). They act as the saga's plan says and record their effects
// in fx. Their logs go to a file printed if the test fails.
func startParticipants(t *testing.T, ps *procs, url string, n int, fx *ledger) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(ps.logFile("participants.log"), &slog.HandlerOptions{Level: slog.LevelInfo}))
	for i := range n {
		nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("chaos participant %d", i)), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// A short ack wait brings back a request lost with a NATS node
		// sooner; the barrier lock lasts as long.
		p, err := participant.New(js, participant.Config{Name: fmt.Sprintf("chaos-p%d", i), Logger: logger, AckWait: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for _, node := range nodeNames {
			if err := p.Register(action(node), doHandler(fx), undoHandler(fx)); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = p.Start(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Stop(ctx); err != nil {
				t.Errorf("participant %d: stop: %v", i, err)
			}
		})
	}
}

// work stands for the handler's work: a few milliseconds, so that sagas
// are in flight when faults strike.
func work(ctx context.Context) error {
	t := time.NewTimer(time.Duration(rand.IntN(10)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func doHandler(fx *ledger) participant.Handler {
	return func(ctx context.Context, req *participant.Request) (any, error) {
		var p plan
		if err := req.DecodeParams(&p); err != nil {
			return nil, err
		}
		if err := work(ctx); err != nil {
			return nil, err // changed nothing: actions are atomic
		}
		switch {
		case p.Fail == req.Node:
			return nil, participant.Permanent(fmt.Errorf("saga %d: %s fails for good, as planned", p.N, req.Node))
		case p.Flaky == req.Node && req.Attempt <= p.FlakyTimes:
			return nil, fmt.Errorf("saga %d: %s fails at attempt %d, as planned", p.N, req.Node, req.Attempt)
		}
		fx.do(req.IdempotencyKey)
		return map[string]any{"node": req.Node, "saga": p.N}, nil
	}
}

func undoHandler(fx *ledger) participant.Handler {
	return func(ctx context.Context, req *participant.Request) (any, error) {
		var p plan
		if err := req.DecodeParams(&p); err != nil {
			return nil, err
		}
		if err := work(ctx); err != nil {
			return nil, err
		}
		if p.FlakyUndo == req.Node && req.Attempt == 1 {
			return nil, fmt.Errorf("saga %d: undo of %s fails at attempt 1, as planned", p.N, req.Node)
		}
		fx.undo(req.IdempotencyKey)
		return nil, nil
	}
}

// workload starts the planned sagas, one every `every`, in the background.
type workload struct {
	t       *testing.T
	cl      *client.Client
	js      jetstream.JetStream
	def     *saga.Definition
	plans   []planned
	started atomic.Int64
	retries atomic.Int64 // start commands sent again after an error
	done    chan struct{}
	cancel  context.CancelFunc
	took    time.Duration
}

func startWorkload(t *testing.T, cl *client.Client, js jetstream.JetStream, plans []planned, every time.Duration) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{t: t, cl: cl, js: js, def: definition(), plans: plans, done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() { cancel(); <-w.done })
	go w.run(ctx, every)
	return w
}

func (w *workload) run(ctx context.Context, every time.Duration) {
	defer close(w.done)
	begin := time.Now()
	defer func() { w.took = time.Since(begin) }()
	for i, p := range w.plans {
		if !sleepUntil(ctx, begin.Add(time.Duration(i)*every)) {
			return
		}
		if err := w.start(ctx, p); err != nil {
			w.t.Errorf("start saga %d (%s): %v", p.plan.N, p.id, err)
			return
		}
		w.started.Add(1)
	}
}

// start starts a saga, sending its start again after an error (a NATS
// node down, say) until it is durable: the id makes that safe.
func (w *workload) start(ctx context.Context, p planned) error {
	send := func(ctx context.Context) error {
		_, err := w.cl.Start(ctx, w.def, p.plan, client.WithSagaID(p.id))
		return err
	}
	if err := w.retry(ctx, send); err != nil {
		return err
	}
	if p.plan.Twice {
		// The client's start has a fixed message id, so JetStream would
		// drop a second one as a duplicate: this one has its own id and
		// reaches a coordinator (docs/protocol.md: starting an id that
		// exists does nothing).
		if err := w.retry(ctx, func(ctx context.Context) error { return w.sendStartAgain(ctx, p) }); err != nil {
			return err
		}
	}
	return nil
}

func (w *workload) retry(ctx context.Context, f func(context.Context) error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(sctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		w.retries.Add(1)
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return err
		}
	}
}

func (w *workload) sendStartAgain(ctx context.Context, p planned) error {
	params, err := json.Marshal(p.plan)
	if err != nil {
		return err
	}
	b, err := events.Encode(events.Event{ID: "start:" + p.id + ":again", Source: "/jetsaga/chaos", SagaID: p.id, Time: time.Now().UTC(),
		Data: &events.StartSaga{SagaCreated: events.SagaCreated{Definition: w.def, Params: params}}})
	if err != nil {
		return err
	}
	m := nats.NewMsg(streams.CommandSubject(streams.Partition(p.id, partitions)))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, "start:"+p.id+":again")
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	_, err = w.js.PublishMsg(ctx, m)
	return err
}

// allStarted reports whether every saga has been started.
func (w *workload) allStarted() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// wait waits until every saga has been started.
func (w *workload) wait(timeout time.Duration) {
	w.t.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.t.Fatalf("workload: %d of %d sagas started after %s", w.started.Load(), len(w.plans), timeout)
	}
	if n := int(w.started.Load()); n != len(w.plans) {
		w.t.Fatalf("workload: only %d of %d sagas started", n, len(w.plans))
	}
}

// sleepUntil waits until t or ctx's end, and reports whether it got to t.
// It paces the workload and the faults; nothing waits on it to
// synchronise.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// between returns a random duration in [lo, hi).
func between(rng *rand.Rand, r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])))
}

// describe summarises a saga's status for an error message.
func describe(s *client.Saga) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", s.Status)
	if s.FailedNode != "" {
		fmt.Fprintf(&b, " (failed node %s)", s.FailedNode)
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, " %s=%s", n.Path, n.State)
		if n.Error != nil {
			fmt.Fprintf(&b, "[%s: %s]", n.Error.Kind, n.Error.Message)
		}
	}
	return b.String()
}
