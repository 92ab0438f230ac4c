package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// countingHandler counts the log records with a given message.
type countingHandler struct {
	slog.Handler
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h countingHandler) WithGroup(string) slog.Handler            { return h }

// While a workload runs, random and adversarial messages go to every
// subject jetsaga consumes: garbage, payloads over the limit, replies for
// other sagas and attempts, replays of real replies, illegal operator
// commands, starts of sagas that exist, bogus timers, malformed requests to
// participants. Every saga still ends as it should, every message that
// reaches the coordinator is rejected and logged exactly once, and nothing
// crashes. JETSAGA_HOSTILE_SEED replays a run.
func TestHostileInputDuringWorkload(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("JETSAGA_HOSTILE_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (JETSAGA_HOSTILE_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	srv := natstest.RunServer(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	var logged atomic.Int64
	_, cjs := natstest.Connect(t, srv.ClientURL())
	c, err := coordinator.New(cjs, coordinator.Config{Name: "target", Topology: testTopo(),
		Logger: slog.New(countingHandler{msg: "input rejected", n: &logged})})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	_, pjs := natstest.Connect(t, srv.ClientURL())
	p, err := participant.New(pjs, participant.Config{Name: "target-p"})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(_ context.Context, req *participant.Request) (any, error) {
		return map[string]string{"node": req.Node}, nil
	}
	fail := func(context.Context, *participant.Request) (any, error) {
		return nil, participant.Permanent(errors.New("no"))
	}
	if err := errors.Join(p.Register("h.ok", ok, ok), p.Register("h.fail", fail, nil)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cl, err := client.New(ctxT(t), js)
	if err != nil {
		t.Fatal(err)
	}

	// Copies of real replies, to replay later.
	var mu sync.Mutex
	var replies []*nats.Msg
	rsub, err := nc.Subscribe("jetsaga.reply.>", func(m *nats.Msg) {
		mu.Lock()
		replies = append(replies, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rsub.Unsubscribe() })

	good := saga.New("h").Then(saga.Action("a", "h.ok").Undo("h.ok")).Then(saga.Action("b", "h.ok").Undo("h.ok")).Then(saga.Action("c", "h.ok")).MustBuild()
	bad := saga.New("h").Then(saga.Action("a", "h.ok").Undo("h.ok")).Then(saga.Action("b", "h.ok").Undo("h.ok")).Then(saga.Action("c", "h.fail")).MustBuild()
	const sagas = 30
	ids := make([]string, sagas)
	want := map[string]string{}
	for i := range ids {
		ids[i] = uuid.NewString()
		def, outcome := good, client.StatusSucceeded
		if i%3 == 0 {
			def, outcome = bad, client.StatusUnwound
		}
		want[ids[i]] = outcome
		if _, err := cl.Start(ctxT(t), def, map[string]int{"i": i}, client.WithSagaID(ids[i])); err != nil {
			t.Fatal(err)
		}
	}

	before := c.Status().Rejected
	var delivered int64 // adversarial messages stored for the coordinator
	publish := func(subject string, data []byte) {
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set("Nats-Msg-Id", uuid.NewString())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish to %s: %v", subject, err)
		}
		delivered++
	}
	event := func(id, sagaID string, d events.Data) []byte {
		b, err := events.Encode(events.Event{ID: id, Source: "/fuzz", SagaID: sagaID, Data: d})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	someSaga := func() string { return ids[rng.IntN(len(ids))] }
	part := func(id string) int { return streams.Partition(id, testPartitions) }
	garbage := func() []byte {
		b := make([]byte, rng.IntN(2000))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	const rounds = 300
	for range rounds {
		id := someSaga()
		switch rng.IntN(8) {
		case 0: // garbage on a command or reply subject
			subj := streams.ReplySubject(part(id))
			if rng.IntN(2) == 0 {
				subj = streams.CommandSubject(part(id))
			}
			publish(subj, garbage())
		case 1: // a reply to an attempt that was never made
			node := []string{"a", "b", "c", "zz"}[rng.IntN(4)]
			op := []events.Op{events.OpDo, events.OpUndo}[rng.IntN(2)]
			rid := events.RequestID(id, node, op, 50+rng.IntN(50))
			publish(streams.ReplySubject(part(id)), event(events.ReplyID(rid), id,
				&events.ActionReply{RequestID: rid, Op: op, Node: node, Attempt: 50 + rng.IntN(50), OK: rng.IntN(2) == 0,
					Error: nil, Output: json.RawMessage(`{"evil":true}`)}))
		case 2: // a replay of a real reply
			mu.Lock()
			var m *nats.Msg
			if len(replies) > 0 {
				m = replies[rng.IntN(len(replies))]
			}
			mu.Unlock()
			if m == nil {
				continue
			}
			// Wait until the saga it answers has moved past it: replay
			// only replies of finished sagas, so they are surely stale.
			ev, err := events.Decode(m.Data)
			if err != nil || ev.Source == "/fuzz" {
				continue // one of ours, not a participant's
			}
			if s, err := cl.Status(ctxT(t), ev.SagaID); err != nil || !s.Finished() {
				continue
			}
			publish(m.Subject, m.Data)
		case 3: // an operator command the saga's state does not allow
			cmds := []events.OperatorCommand{{Action: events.ActionRetry, Node: "a"}, {Action: events.ActionResolve, Node: "b", Reason: "x"},
				{Action: events.ActionResume}, {Action: events.ActionFault, Fault: &events.Fault{Node: "nope", FailAction: true}}}
			cmd := cmds[rng.IntN(len(cmds))]
			publish(streams.CommandSubject(part(id)), event("op:"+uuid.NewString(), id, &cmd))
		case 4: // a start of a saga that exists, with another definition
			publish(streams.CommandSubject(part(id)), event("start:"+id+":"+uuid.NewString(), id,
				&events.StartSaga{SagaCreated: events.SagaCreated{Definition: good, Params: json.RawMessage(`"hijack"`)}}))
		case 5: // a bogus timer
			tm, _ := json.Marshal(map[string]any{"saga_id": id, "timer": map[string]any{"kind": "timeout", "op": "do", "node": "b", "attempt": 77}})
			if rng.IntN(2) == 0 {
				tm = garbage()
			}
			publish(streams.TimerFireSubject(part(id)), tm)
		case 6: // a payload over the limit never gets in
			m := nats.NewMsg(streams.ReplySubject(part(id)))
			m.Data = make([]byte, streams.DefaultMaxMsgSize+1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := js.PublishMsg(ctx, m); err == nil {
				t.Fatal("a payload over the limit was stored")
			}
			cancel()
		case 7: // a malformed request to a participant
			m := nats.NewMsg(streams.RequestSubject("h.ok"))
			m.Data = garbage()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}
	e := &env{t: t, cl: cl}
	for _, id := range ids {
		if s := e.wait(id); s.Status != want[id] {
			t.Errorf("saga %s: %s, want %s (params %s)", id, s.Status, want[id], s.Params)
		}
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		got := c.Status().Rejected - before
		if got < delivered {
			return fmt.Errorf("%d of %d adversarial inputs rejected", got, delivered)
		}
		if total := c.Status().Rejected; logged.Load() != total {
			return fmt.Errorf("%d rejections logged, %d counted: each must be logged once", logged.Load(), total)
		}
		return nil
	})
	t.Logf("%d adversarial messages reached the coordinator; %d rejected in all, each logged once", delivered, c.Status().Rejected)
}
