package conformance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/conformance"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// toy is a participant written against the wire protocol alone, as one in
// another language would be, that keeps every rule unless told to break
// one (breaks). Its action's output counts its runs, so a second effect
// shows in the output.
type toy struct {
	t      *testing.T
	js     jetstream.JetStream
	action string
	breaks string

	mu      sync.Mutex
	runs    int
	records map[string]*record // by idempotency key
}

type record struct {
	state  string // done, failed, undone, tombstone
	output json.RawMessage
	err    *events.Error
}

// The ways a toy breaks the rules, and the rule that must catch each.
var breaks = map[string]string{
	"msgid":      "reply",         // replies without Nats-Msg-Id
	"id":         "reply",         // reply id is not "<request id>:reply"
	"trace":      "reply",         // does not copy traceparent
	"record":     "repeat",        // runs the action again on every request
	"kind":       "permanent",     // replies a permanent failure as transient
	"after-undo": "undo",          // runs an action that arrives after its undo
	"undo-first": "undo-first",    // fails an undo of an action that never ran
	"deadline":   "deadline",      // runs requests past their deadline
	"malformed":  "malformed",     // naks malformed requests instead of terminating them
	"ack":        "ack",           // never acks
	"nak":        "ack",           // naks each request once before answering it
	"consumer":   "consumer",      // creates its consumer with deliver policy new
	"kind-name":  "transient",     // replies a transient failure with kind "timeout"
	"no-repeat":  "later-attempt", // answers a later attempt by running again
	"ack-always": "unreplied",     // acks a request whose reply could not be published
}

func (p *toy) start(ctx context.Context) {
	cfg := streams.ActionConsumer(p.action, time.Second) // short: a missing ack shows soon
	if p.breaks == "consumer" {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	cons, err := p.js.CreateConsumer(ctx, streams.WorkStream, cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	cc, err := cons.Consume(p.handle)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(cc.Stop)
}

func (p *toy) handle(msg jetstream.Msg) {
	ev, err := events.Decode(msg.Data())
	req, ok := ev.Data.(*events.ActionRequest)
	if err != nil || !ok {
		if p.breaks == "malformed" {
			_ = msg.Nak()
		} else {
			_ = msg.Term()
		}
		return
	}
	if p.breaks == "nak" {
		if md, err := msg.Metadata(); err == nil && md.NumDelivered == 1 {
			_ = msg.Nak()
			return
		}
	}
	reply := p.decide(ev, req)
	id := events.ReplyID(ev.ID)
	if p.breaks == "id" {
		id = ev.ID
	}
	trace := ev.TraceParent
	if p.breaks == "trace" {
		trace = ""
	}
	b, err := events.Encode(events.Event{ID: id, Source: "/toy", SagaID: ev.SagaID, Time: time.Now(), TraceParent: trace, Data: reply})
	if err != nil {
		p.t.Error(err)
		return
	}
	m := nats.NewMsg(req.ReplyTo)
	m.Data = b
	if p.breaks != "msgid" {
		m.Header.Set(jetstream.MsgIDHeader, id)
	}
	if _, err := p.js.PublishMsg(context.Background(), m); err != nil {
		if p.breaks == "ack-always" {
			_ = msg.Ack()
		} else {
			_ = msg.Nak()
		}
		return
	}
	if p.breaks != "ack" {
		_ = msg.Ack()
	}
}

func (p *toy) decide(ev events.Event, req *events.ActionRequest) *events.ActionReply {
	p.mu.Lock()
	defer p.mu.Unlock()
	reply := &events.ActionReply{RequestID: ev.ID, Op: req.Op, Node: req.Node, Attempt: req.Attempt, OK: true}
	fail := func(kind events.ErrorKind, msg string) *events.ActionReply {
		reply.OK, reply.Error = false, &events.Error{Kind: kind, Message: msg}
		return reply
	}
	rec := p.records[req.IdempotencyKey]
	if req.Op == events.OpUndo {
		switch {
		case rec == nil && p.breaks == "undo-first":
			return fail(events.ErrorPermanent, "nothing to undo")
		case rec == nil:
			p.records[req.IdempotencyKey] = &record{state: "tombstone"}
		default:
			rec.state = "undone"
		}
		return reply
	}
	if rec != nil && p.breaks != "record" && !(p.breaks == "no-repeat" && req.Attempt > 1) {
		switch rec.state {
		case "done":
			reply.Output = rec.output
			return reply
		case "failed":
			reply.OK, reply.Error = false, rec.err
			return reply
		default:
			if p.breaks != "after-undo" {
				return fail(events.ErrorPermanent, "arrived after its undo")
			}
		}
	}
	if !req.Deadline.IsZero() && time.Now().After(req.Deadline) && p.breaks != "deadline" {
		return fail(events.ErrorTransient, "deadline passed")
	}
	var params struct{ Fail string }
	_ = json.Unmarshal(req.Params, &params)
	switch params.Fail {
	case "permanent":
		kind := events.ErrorPermanent
		if p.breaks == "kind" {
			kind = events.ErrorTransient
		}
		p.records[req.IdempotencyKey] = &record{state: "failed", err: &events.Error{Kind: kind, Message: "refused"}}
		return fail(kind, "refused")
	case "transient":
		kind := events.ErrorTransient
		if p.breaks == "kind-name" {
			kind = events.ErrorTimeout
		}
		return fail(kind, "busy")
	}
	p.runs++
	reply.Output = json.RawMessage(fmt.Sprintf(`{"run":%d}`, p.runs))
	p.records[req.IdempotencyKey] = &record{state: "done", output: reply.Output}
	return reply
}

func config(action string) conformance.Config {
	return conformance.Config{
		Action: action, Undo: true,
		Params:          json.RawMessage(`{"who":"ada"}`),
		FailParams:      json.RawMessage(`{"fail":"permanent"}`),
		TransientParams: json.RawMessage(`{"fail":"transient"}`),
		Timeout:         5 * time.Second,
		Quiet:           500 * time.Millisecond,
	}
}

// A participant that keeps every rule passes every rule; one that breaks
// a rule fails that rule, with a message that says what it saw.
func TestKitFindsEachBrokenRule(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel) // the subtests run after this function returns
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{"": ""}
	for b, rule := range breaks {
		cases[b] = rule
	}
	for brk, rule := range cases {
		t.Run("breaks="+brk, func(t *testing.T) {
			t.Parallel()
			action := "toy.a" + strings.ReplaceAll(brk, "-", "_")
			p := &toy{t: t, js: js, action: action, breaks: brk, records: map[string]*record{}}
			p.start(ctx)
			results, err := conformance.Run(ctx, js, config(action), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				switch {
				case r.Rule == rule && r.Status != conformance.Fail:
					t.Errorf("rule %s %s against a participant that breaks it (%s), want fail", r.Rule, r.Status, brk)
				case r.Rule == rule:
					t.Logf("rule %s failed as it should: %s", r.Rule, r.Detail)
				case brk == "" && r.Status != conformance.Pass:
					t.Errorf("rule %s %s against a participant that keeps every rule: %s", r.Rule, r.Status, r.Detail)
				}
			}
		})
	}
}

// Rules the kit cannot check without help are skipped, saying what they
// need; a participant that is not running fails the consumer rule, and
// every other rule is skipped with the reason.
func TestKitSkipsAndExplains(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	results, err := conformance.Run(ctx, js, conformance.Config{Action: "nobody.home"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Status != conformance.Fail || !strings.Contains(results[0].Detail, "is a participant of nobody.home running?") {
		t.Fatalf("consumer rule with no participant: %+v", results[0])
	}
	for _, r := range results[1:] {
		if r.Status != conformance.Skip {
			t.Fatalf("rule %s %s with no participant, want skip", r.Rule, r.Status)
		}
	}

	p := &toy{t: t, js: js, action: "toy.plain", records: map[string]*record{}}
	p.start(ctx)
	results, err = conformance.Run(ctx, js, conformance.Config{Action: "toy.plain", Quiet: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	skipped := map[string]string{}
	for _, r := range results {
		if r.Status == conformance.Fail {
			t.Errorf("rule %s failed: %s", r.Rule, r.Detail)
		}
		if r.Status == conformance.Skip {
			skipped[r.Rule] = r.Detail
		}
	}
	for rule, need := range map[string]string{"permanent": "--fail-params", "transient": "--transient-params", "undo": "--undo", "undo-first": "--undo"} {
		if !strings.Contains(skipped[rule], need) {
			t.Errorf("rule %s: skipped %q, want it skipped asking for %s", rule, skipped[rule], need)
		}
	}
	if _, err := conformance.Run(ctx, js, conformance.Config{Action: "bad action"}, nil); !errors.Is(err, streams.ErrInvalidActionName) {
		t.Errorf("Run with a bad action name = %v, want ErrInvalidActionName", err)
	}
}
