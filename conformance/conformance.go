// Package conformance checks a running participant, written in any
// language, against the rules of jetsaga's participant protocol
// (docs/protocol.md, "Rules every participant follows"). It drives the
// participant over the wire, as a coordinator would: it publishes action
// and undo requests for one action on jetsaga.req.<action> and reads the
// replies, and reports each rule as passed, failed (with what it saw) or
// skipped (with what it needs). `jetsaga conformance` and
// sagatest.Conformance run it.
//
// The kit sees a participant only through its replies and its consumer,
// so it observes effects through outputs: a repeated request must be
// answered with the output the first one got, byte for byte as JSON. An
// action whose output would be the same if it ran twice (a booking looked
// up by its key, say) passes that rule even if it did run twice; give the
// kit an action whose output tells runs apart (an id it creates) to check
// that too.
//
// Run it against a participant with no other traffic: it uses sagas of its
// own (fresh ids, so it touches no real saga's records), replies to a
// subject no coordinator reads (jetsaga.reply.conformance-<id>), and reads
// the action's consumer's counters to check acks.
package conformance

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cloudevent "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/streams"
)

// Config says which action to check and how to make it succeed or fail.
type Config struct {
	// Namespace is the deployment the participant serves (empty: the
	// default one).
	Namespace streams.Namespace
	// Action is the action to check (its participant must be running).
	Action string
	// Undo: the action has an undo; check the undo rules.
	Undo bool
	// Params are the params of a request that succeeds (JSON; default
	// null).
	Params json.RawMessage
	// Outputs are the outputs of the ancestors the action looks up, sent
	// with every do request, as a coordinator would.
	Outputs map[string]json.RawMessage
	// FailParams, if set, are params that make the action fail for good:
	// the permanent-error rules need them.
	FailParams json.RawMessage
	// TransientParams, if set, are params that make the action fail with
	// a transient error.
	TransientParams json.RawMessage
	// Timeout is how long to wait for each reply. Default 10s.
	Timeout time.Duration
	// Quiet is how long the kit waits to conclude that a message gets no
	// reply. Default 2s.
	Quiet time.Duration
}

// Status is a rule's result.
type Status string

// Statuses.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one rule's result.
type Result struct {
	// Rule is the rule's short name ("repeat").
	Rule string `json:"rule"`
	// Title says what the rule checks.
	Title  string `json:"title"`
	Status Status `json:"status"`
	// Detail says what failed, or why the rule was skipped.
	Detail string `json:"detail,omitempty"`
}

// Rule is one rule the kit checks.
type Rule struct {
	Name, Title string
	run         func(*kit, context.Context) (skip string, problems []string)
}

// Rules lists the rules in the order Run checks them.
func Rules() []Rule {
	return []Rule{
		{"consumer", "the action's consumer has the protocol's config", (*kit).ruleConsumer},
		{"reply", "a request gets one valid CloudEvents reply with the right ids, attributes and headers", (*kit).ruleReply},
		{"repeat", "the same request again is answered with the recorded output, without a second effect", (*kit).ruleRepeat},
		{"later-attempt", "a later attempt of a node that succeeded is answered with the same output", (*kit).ruleLaterAttempt},
		{"permanent", "a permanent failure is replied as kind permanent, and again on a repeat", (*kit).rulePermanent},
		{"transient", "a transient failure is replied as kind transient, retry_after a duration", (*kit).ruleTransient},
		{"undo", "an undo succeeds, again when repeated, and the action after it is refused", (*kit).ruleUndo},
		{"undo-first", "an undo of an action that never ran succeeds, and the action after it is refused", (*kit).ruleUndoFirst},
		{"deadline", "a request past its deadline is not run: a transient error, and a later attempt runs", (*kit).ruleDeadline},
		{"malformed", "a malformed request is terminated: no reply, no redelivery", (*kit).ruleMalformed},
		{"ack", "every request is acked once its reply is published, and none is redelivered", (*kit).ruleAck},
		{"unreplied", "a request whose reply cannot be published is not acked, and comes back", (*kit).ruleUnreplied},
	}
}

// Run checks the participant serving cfg.Action through js and returns
// every rule's result, calling each (if not nil) as a rule finishes. The
// error is for the kit's own trouble (ctx ended, no connection); a
// participant that breaks a rule is a failed Result.
func Run(ctx context.Context, js jetstream.JetStream, cfg Config, each func(Result)) ([]Result, error) {
	if err := streams.ValidateActionName(cfg.Action); err != nil {
		return nil, err
	}
	if err := cfg.Namespace.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 2 * time.Second
	}
	if len(cfg.Params) == 0 {
		cfg.Params = json.RawMessage("null")
	}
	if _, ok := ctx.Deadline(); !ok { // NATS calls want one
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
	}
	k := &kit{js: js, cfg: cfg, nc: js.Conn(), replies: map[string][]*nats.Msg{}, misnamed: map[string]string{}, arrived: make(chan struct{}, 1)}
	// A reply subject JETSAGA_WORK stores but no partition consumer reads.
	k.replyTo = cfg.Namespace.Subject("jetsaga.reply.conformance-" + randomHex(6))
	k.trace = "00-" + randomHex(16) + "-" + randomHex(8) + "-01"
	sub, err := k.nc.Subscribe(k.replyTo, k.collect)
	if err != nil {
		return nil, fmt.Errorf("conformance: subscribe to %s: %w", k.replyTo, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := k.nc.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	var out []Result
	for _, r := range Rules() {
		res := Result{Rule: r.Name, Title: r.Title, Status: Pass}
		switch {
		case k.noConsumer != "" && r.Name != "consumer":
			res.Status, res.Detail = Skip, k.noConsumer
		default:
			skip, problems := r.run(k, ctx)
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("conformance: %w", err)
			}
			switch {
			case skip != "":
				res.Status, res.Detail = Skip, skip
			case len(problems) > 0:
				res.Status, res.Detail = Fail, strings.Join(problems, "; ")
			}
		}
		out = append(out, res)
		if each != nil {
			each(res)
		}
	}
	return out, nil
}

// Failed reports whether any rule failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

type kit struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	cfg     Config
	replyTo string
	trace   string

	mu       sync.Mutex
	replies  map[string][]*nats.Msg // by CloudEvents id ("" when unreadable)
	misnamed map[string]string      // request id → the id a reply to it came with, when not the right one
	arrived  chan struct{}

	cons       jetstream.Consumer
	ackWait    time.Duration
	noConsumer string // why there is no consumer to check, if none
	seqs       []uint64
	// deliveredBase is the consumer's delivery count before the kit's
	// first request: every delivery, redeliveries too, counts there.
	deliveredBase uint64
	ackProblem    string // the first request seen not acked
	firstOK       json.RawMessage
	firstSaga     string
}

func (k *kit) collect(m *nats.Msg) {
	var head struct {
		ID   string `json:"id"`
		Data struct {
			RequestID string `json:"request_id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(m.Data, &head)
	k.mu.Lock()
	k.replies[head.ID] = append(k.replies[head.ID], m)
	if rid := head.Data.RequestID; rid != "" && head.ID != events.ReplyID(rid) {
		k.misnamed[rid] = head.ID
	}
	k.mu.Unlock()
	select {
	case k.arrived <- struct{}{}:
	default:
	}
}

// request is one request the kit sends.
type request struct {
	saga, node string
	op         events.Op
	attempt    int
	params     json.RawMessage
	output     json.RawMessage // undo requests
	deadline   time.Time
}

func (r request) id() string { return events.RequestID(r.saga, r.node, r.op, r.attempt) }

func (k *kit) newRequest(op events.Op, attempt int, params json.RawMessage) request {
	return request{saga: uuid.NewString(), node: "conformance", op: op, attempt: attempt, params: params}
}

// send publishes r (msgID, if not empty, as its Nats-Msg-Id instead of
// its id: a repeat needs one the stream has not seen) and returns its
// stream sequence.
func (k *kit) send(ctx context.Context, r request, msgID string) (uint64, error) {
	if r.deadline.IsZero() {
		r.deadline = time.Now().Add(30 * time.Second)
	}
	undo := ""
	if k.cfg.Undo {
		undo = k.cfg.Action
	}
	body := &events.ActionRequest{Op: r.op, Node: r.node, Action: k.cfg.Action, Undo: undo, Attempt: r.attempt,
		IdempotencyKey: r.saga + ":" + r.node, Params: r.params, Deadline: r.deadline.UTC(), ReplyTo: k.replyTo}
	if r.op == events.OpDo {
		body.Outputs = k.cfg.Outputs
		if body.Outputs == nil {
			body.Outputs = map[string]json.RawMessage{}
		}
	} else {
		body.Output = r.output
		if len(body.Output) == 0 {
			body.Output = json.RawMessage("null")
		}
	}
	b, err := events.Encode(events.Event{ID: r.id(), Source: "/jetsaga/conformance", SagaID: r.saga, Time: time.Now(), TraceParent: k.trace, Data: body})
	if err != nil {
		return 0, err
	}
	return k.publish(ctx, b, cmp.Or(msgID, r.id()))
}

func (k *kit) publish(ctx context.Context, data []byte, msgID string) (uint64, error) {
	m := nats.NewMsg(k.cfg.Namespace.RequestSubject(k.cfg.Action))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	ack, err := k.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("publish a request on %s: %w", m.Subject, err)
	}
	if ack.Duplicate {
		return 0, fmt.Errorf("the stream took the request %s for a duplicate", msgID)
	}
	k.seqs = append(k.seqs, ack.Sequence)
	return ack.Sequence, nil
}

// reply waits for the n-th reply (from 1) to r and checks it; problems
// say what is wrong with it (nil reply: none came).
func (k *kit) reply(ctx context.Context, r request, n int) (*events.ActionReply, []string) {
	id := events.ReplyID(r.id())
	deadline := time.NewTimer(k.cfg.Timeout)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		got, other := k.replies[id], k.misnamed[r.id()]
		k.mu.Unlock()
		if len(got) >= n {
			return k.check(r, got[n-1])
		}
		if other != "" {
			return nil, []string{fmt.Sprintf("the reply to %s came with id %q, want %q: the id must be the request's id followed by \":reply\"", r.id(), other, id)}
		}
		select {
		case <-k.arrived:
		case <-deadline.C:
			return nil, []string{k.noReply(r, n)}
		case <-ctx.Done():
			return nil, []string{ctx.Err().Error()}
		}
	}
}

// noReply describes a missing reply, naming any reply that came for the
// request's saga under another id.
func (k *kit) noReply(r request, n int) string {
	want := events.ReplyID(r.id())
	what := "no reply"
	if n > 1 {
		what = fmt.Sprintf("no reply to the request sent again (%d replies in all)", n-1)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, ms := range k.replies {
		if id != want && strings.Contains(string(ms[0].Data), r.saga) {
			return fmt.Sprintf("%s %s to %s with id %q in %s; a reply came with id %q: the id must be the request's id followed by \":reply\"", what, r.op, r.id(), want, k.cfg.Timeout, id)
		}
	}
	return fmt.Sprintf("%s to %s request %s (reply_to %s) in %s", what, r.op, r.id(), k.replyTo, k.cfg.Timeout)
}

// expectOK checks that r's n-th reply is a success.
func (k *kit) expectOK(ctx context.Context, r request, n int) (json.RawMessage, []string) {
	rep, problems := k.reply(ctx, r, n)
	if rep == nil {
		return nil, problems
	}
	if !rep.OK {
		return nil, append(problems, fmt.Sprintf("%s %s attempt %d failed (%s: %s), want success", r.op, r.node, r.attempt, rep.Error.Kind, rep.Error.Message))
	}
	return rep.Output, problems
}

// expectError checks that r's n-th reply is an error of kind.
func (k *kit) expectError(ctx context.Context, r request, n int, kind events.ErrorKind, why string) (*events.ActionReply, []string) {
	rep, problems := k.reply(ctx, r, n)
	if rep == nil {
		return nil, problems
	}
	switch {
	case rep.OK:
		problems = append(problems, fmt.Sprintf("%s %s attempt %d succeeded, want a %s error: %s", r.op, r.node, r.attempt, kind, why))
	case rep.Error.Kind != kind:
		problems = append(problems, fmt.Sprintf("%s %s attempt %d failed with kind %s (%s), want %s: %s", r.op, r.node, r.attempt, rep.Error.Kind, rep.Error.Message, kind, why))
	}
	return rep, problems
}

// check validates one reply message to r.
func (k *kit) check(r request, m *nats.Msg) (*events.ActionReply, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	want := events.ReplyID(r.id())
	if problem := validCloudEvent(m.Data); problem != "" {
		bad("reply to %s: %s", r.id(), problem)
	}
	var attrs struct {
		Type, Subject, Source, Time, DataContentType, TraceParent string
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(m.Data, &raw); err == nil {
		for name, dst := range map[string]*string{"type": &attrs.Type, "subject": &attrs.Subject, "source": &attrs.Source,
			"time": &attrs.Time, "datacontenttype": &attrs.DataContentType, "traceparent": &attrs.TraceParent} {
			_ = json.Unmarshal(raw[name], dst)
		}
	}
	if attrs.Time == "" {
		bad("reply %s has no time attribute (protocol.md: set it)", want)
	}
	if attrs.TraceParent != k.trace {
		bad("reply %s has traceparent %q, want the request's %q copied", want, attrs.TraceParent, k.trace)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != want {
		bad("reply %s has header Nats-Msg-Id %q, want its id (so a reply published twice is stored once)", want, got)
	}
	ev, err := events.Decode(m.Data)
	if err != nil {
		bad("reply %s is not a valid jetsaga reply: %v", want, err)
		return nil, problems
	}
	rep, ok := ev.Data.(*events.ActionReply)
	switch {
	case !ok:
		bad("reply %s has type %s, want %s", want, ev.Type(), events.TypeActionReply)
		return nil, problems
	case ev.SagaID != r.saga:
		bad("reply %s has subject %s, want the request's saga %s", want, ev.SagaID, r.saga)
	case rep.RequestID != r.id() || rep.Op != r.op || rep.Node != r.node || rep.Attempt != r.attempt:
		bad("reply %s names request %q, op %s, node %q, attempt %d; want %q, %s, %q, %d (copied from the request)",
			want, rep.RequestID, rep.Op, rep.Node, rep.Attempt, r.id(), r.op, r.node, r.attempt)
	}
	if !rep.OK && rep.Error != nil && rep.Error.Kind != events.ErrorTransient && rep.Error.Kind != events.ErrorPermanent {
		bad("reply %s has error kind %q; a participant replies transient or permanent", want, rep.Error.Kind)
	}
	return rep, problems
}

// acked waits until the request at seq is acked (or terminated), and
// notes the first that is not, for the ack rule.
func (k *kit) acked(ctx context.Context, seq uint64) {
	if k.cons == nil || k.ackProblem != "" {
		return
	}
	deadline := time.Now().Add(k.ackWait + 2*time.Second)
	for {
		info, err := k.cons.Info(ctx)
		if err == nil && info.AckFloor.Stream >= seq {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			k.ackProblem = fmt.Sprintf("request at stream sequence %d not acked %s after it was handled (ack floor %d)", seq, k.ackWait+2*time.Second, floor(info))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func floor(info *jetstream.ConsumerInfo) uint64 {
	if info == nil {
		return 0
	}
	return info.AckFloor.Stream
}

func (k *kit) ruleConsumer(ctx context.Context) (string, []string) {
	name := streams.ActionConsumerName(k.cfg.Action)
	cons, err := k.js.Consumer(ctx, k.cfg.Namespace.WorkStream(), name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		k.noConsumer = fmt.Sprintf("no consumer %s on %s: is a participant of %s running? (it creates the consumer)", name, k.cfg.Namespace.WorkStream(), k.cfg.Action)
		return "", []string{k.noConsumer}
	}
	if err != nil {
		k.noConsumer = fmt.Sprintf("consumer %s: %v", name, err)
		return "", []string{k.noConsumer}
	}
	info, err := cons.Info(ctx)
	if err != nil {
		k.noConsumer = fmt.Sprintf("consumer %s: %v", name, err)
		return "", []string{k.noConsumer}
	}
	k.cons, k.ackWait, k.deliveredBase = cons, info.Config.AckWait, info.Delivered.Consumer
	unusable, diffs := k.cfg.Namespace.CheckActionConsumer(k.cfg.Action, info.Config)
	if unusable != "" {
		k.noConsumer = unusable
		return "", []string{unusable}
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		diffs = append(diffs, fmt.Sprintf("it has %d requests pending and %d unacked before the kit sent any: run the kit against a participant with no other traffic", info.NumPending, info.NumAckPending))
	}
	return "", diffs
}

func (k *kit) ruleReply(ctx context.Context) (string, []string) {
	r := k.newRequest(events.OpDo, 1, k.cfg.Params)
	seq, err := k.send(ctx, r, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	out, problems := k.expectOK(ctx, r, 1)
	k.acked(ctx, seq)
	k.firstOK, k.firstSaga = out, r.saga
	if out == nil && len(problems) > 0 {
		k.firstSaga = ""
	}
	return "", problems
}

func (k *kit) ruleRepeat(ctx context.Context) (string, []string) {
	if k.firstSaga == "" {
		return "the reply rule got no success to repeat", nil
	}
	r := request{saga: k.firstSaga, node: "conformance", op: events.OpDo, attempt: 1, params: k.cfg.Params}
	seq, err := k.send(ctx, r, r.id()+"#repeat")
	if err != nil {
		return "", []string{err.Error()}
	}
	out, problems := k.expectOK(ctx, r, 2)
	k.acked(ctx, seq)
	if out != nil && !sameJSON(out, k.firstOK) {
		problems = append(problems, fmt.Sprintf("the repeat was answered with output %s, the first time with %s: it ran again instead of replying the recorded output", out, k.firstOK))
	}
	return "", problems
}

func (k *kit) ruleLaterAttempt(ctx context.Context) (string, []string) {
	if k.firstSaga == "" {
		return "the reply rule got no success to repeat", nil
	}
	r := request{saga: k.firstSaga, node: "conformance", op: events.OpDo, attempt: 2, params: k.cfg.Params}
	seq, err := k.send(ctx, r, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	out, problems := k.expectOK(ctx, r, 1)
	k.acked(ctx, seq)
	if out != nil && !sameJSON(out, k.firstOK) {
		problems = append(problems, fmt.Sprintf("attempt 2 of a node whose attempt 1 succeeded got output %s, attempt 1 got %s: every attempt shares the idempotency key, so the recorded output is the answer", out, k.firstOK))
	}
	return "", problems
}

func (k *kit) rulePermanent(ctx context.Context) (string, []string) {
	if len(k.cfg.FailParams) == 0 {
		return "give params that make the action fail for good (--fail-params)", nil
	}
	r := k.newRequest(events.OpDo, 1, k.cfg.FailParams)
	seq, err := k.send(ctx, r, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	_, problems := k.expectError(ctx, r, 1, events.ErrorPermanent, "these params make the action fail for good")
	k.acked(ctx, seq)
	if len(problems) > 0 {
		return "", problems
	}
	seq, err = k.send(ctx, r, r.id()+"#repeat")
	if err != nil {
		return "", []string{err.Error()}
	}
	_, problems = k.expectError(ctx, r, 2, events.ErrorPermanent, "a reply, once given, stays true")
	k.acked(ctx, seq)
	return "", problems
}

func (k *kit) ruleTransient(ctx context.Context) (string, []string) {
	if len(k.cfg.TransientParams) == 0 {
		return "give params that make the action fail transiently (--transient-params)", nil
	}
	r := k.newRequest(events.OpDo, 1, k.cfg.TransientParams)
	seq, err := k.send(ctx, r, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	_, problems := k.expectError(ctx, r, 1, events.ErrorTransient, "these params make the action fail transiently")
	k.acked(ctx, seq)
	return "", problems
}

func (k *kit) ruleUndo(ctx context.Context) (string, []string) {
	if !k.cfg.Undo {
		return "the action has no undo (--undo to check one)", nil
	}
	do := k.newRequest(events.OpDo, 1, k.cfg.Params)
	var problems []string
	step := func(r request, n int, msgID string, check func(request, int) []string) bool {
		seq, err := k.send(ctx, r, msgID)
		if err != nil {
			problems = append(problems, err.Error())
			return false
		}
		p := check(r, n)
		k.acked(ctx, seq)
		problems = append(problems, p...)
		return len(p) == 0
	}
	var output json.RawMessage
	ok := step(do, 1, "", func(r request, n int) []string {
		out, p := k.expectOK(ctx, r, n)
		output = out
		return p
	})
	if !ok {
		return "", problems
	}
	undoOK := func(r request, n int) []string { _, p := k.expectOK(ctx, r, n); return p }
	undo := request{saga: do.saga, node: do.node, op: events.OpUndo, attempt: 1, params: k.cfg.Params, output: output}
	_ = step(undo, 1, "", undoOK) &&
		step(undo, 2, undo.id()+"#repeat", undoOK) &&
		step(request{saga: do.saga, node: do.node, op: events.OpUndo, attempt: 2, params: k.cfg.Params, output: output}, 1, "", undoOK) &&
		step(request{saga: do.saga, node: do.node, op: events.OpDo, attempt: 2, params: k.cfg.Params}, 1, "", func(r request, n int) []string {
			_, p := k.expectError(ctx, r, n, events.ErrorPermanent, "an action that arrives after its undo is refused, or its effect is never undone")
			return p
		})
	return "", problems
}

func (k *kit) ruleUndoFirst(ctx context.Context) (string, []string) {
	if !k.cfg.Undo {
		return "the action has no undo (--undo to check one)", nil
	}
	undo := k.newRequest(events.OpUndo, 1, k.cfg.Params)
	seq, err := k.send(ctx, undo, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	_, problems := k.expectOK(ctx, undo, 1)
	k.acked(ctx, seq)
	if len(problems) > 0 {
		return "", append(problems, "an undo of an action that never ran must succeed without doing anything")
	}
	do := request{saga: undo.saga, node: undo.node, op: events.OpDo, attempt: 1, params: k.cfg.Params}
	seq, err = k.send(ctx, do, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	_, problems = k.expectError(ctx, do, 1, events.ErrorPermanent, "the action arrived after its undo, which found nothing to undo: running it now leaves an effect nobody undoes")
	k.acked(ctx, seq)
	return "", problems
}

func (k *kit) ruleDeadline(ctx context.Context) (string, []string) {
	late := k.newRequest(events.OpDo, 1, k.cfg.Params)
	late.deadline = time.Now().Add(-time.Second)
	seq, err := k.send(ctx, late, "")
	if err != nil {
		return "", []string{err.Error()}
	}
	_, problems := k.expectError(ctx, late, 1, events.ErrorTransient, "its deadline had passed, so the coordinator has given up on the attempt; it must not run")
	k.acked(ctx, seq)
	next := request{saga: late.saga, node: late.node, op: events.OpDo, attempt: 2, params: k.cfg.Params}
	seq, err = k.send(ctx, next, "")
	if err != nil {
		return "", append(problems, err.Error())
	}
	_, p := k.expectOK(ctx, next, 1)
	k.acked(ctx, seq)
	if len(p) > 0 {
		p = append(p, "the attempt after one that came too late runs as any attempt")
	}
	return "", append(problems, p...)
}

func (k *kit) ruleMalformed(ctx context.Context) (string, []string) {
	bad := k.newRequest(events.OpDo, 1, k.cfg.Params)
	body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/jetsaga/conformance","type":%q,"subject":%q,"datacontenttype":"application/json","data":{"op":"redo","node":"conformance","action":%q,"attempt":1,"idempotency_key":%q,"params":null,"reply_to":%q}}`,
		bad.id(), events.TypeActionRequest, bad.saga, k.cfg.Action, bad.saga+":conformance", k.replyTo)
	var problems []string
	var seqs []uint64
	for _, m := range []string{"not json at all", body} {
		seq, err := k.publish(ctx, []byte(m), uuid.NewString())
		if err != nil {
			return "", []string{err.Error()}
		}
		seqs = append(seqs, seq)
	}
	time.Sleep(k.cfg.Quiet)
	k.mu.Lock()
	n := len(k.replies[events.ReplyID(bad.id())])
	k.mu.Unlock()
	if n > 0 {
		problems = append(problems, fmt.Sprintf("a request with op \"redo\" was replied %d times; a malformed request is terminated, not answered", n))
	}
	// Terminated (or acked) by now, or within the reply timeout: polled,
	// so a slow but correct participant passes.
	deadline := time.Now().Add(k.cfg.Timeout)
	for k.cons != nil {
		info, err := k.cons.Info(ctx)
		if err != nil {
			return "", append(problems, err.Error())
		}
		if info.AckFloor.Stream >= seqs[1] && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			problems = append(problems, fmt.Sprintf("malformed requests still held %s after they were sent (%d unacked, ack floor %d, want %d): terminate them (+TERM)", k.cfg.Quiet+k.cfg.Timeout, info.NumAckPending, info.AckFloor.Stream, seqs[1]))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", problems
}

func (k *kit) ruleAck(ctx context.Context) (string, []string) {
	var problems []string
	if k.ackProblem != "" {
		problems = append(problems, k.ackProblem+": ack a request once its reply's publish is acknowledged")
	}
	info, err := k.cons.Info(ctx)
	if err != nil {
		return "", append(problems, err.Error())
	}
	if extra := info.Delivered.Consumer - k.deliveredBase - uint64(len(k.seqs)); info.Delivered.Consumer > k.deliveredBase+uint64(len(k.seqs)) {
		problems = append(problems, fmt.Sprintf("the kit's %d requests were delivered %d times more: a participant acks each once replied (or terminates it), without a nak", len(k.seqs), extra))
	}
	return "", problems
}

func (k *kit) ruleUnreplied(ctx context.Context) (string, []string) {
	// A reply_to no stream stores: the participant's JetStream publish
	// fails at once (no responders), as it would with JETSAGA_WORK down.
	r := k.newRequest(events.OpDo, 1, k.cfg.Params)
	saved := k.replyTo
	k.replyTo = k.cfg.Namespace.Subject("jetsaga.conformance.unreplied." + randomHex(6))
	before, err := k.cons.Info(ctx)
	if err != nil {
		k.replyTo = saved
		return "", []string{err.Error()}
	}
	seq, err := k.send(ctx, r, "")
	k.replyTo = saved
	if err != nil {
		return "", []string{err.Error()}
	}
	// The request would come back forever: remove it from the stream (if
	// the kit may not, it stays pending, retried by the participant).
	defer func() {
		if s, err := k.js.Stream(context.WithoutCancel(ctx), k.cfg.Namespace.WorkStream()); err == nil {
			_ = s.DeleteMsg(context.WithoutCancel(ctx), seq)
		}
	}()
	deadline := time.Now().Add(k.ackWait + 10*time.Second)
	for {
		info, err := k.cons.Info(ctx)
		if err != nil {
			return "", []string{err.Error()}
		}
		if info.AckFloor.Stream >= seq {
			return "", []string{fmt.Sprintf("the request was acked though its reply could not be published (reply_to %s has no stream): ack only once the reply's publish is acknowledged, so the request comes back", r.id())}
		}
		if info.Delivered.Consumer >= before.Delivered.Consumer+2 {
			return "", nil // delivered again, still unacked
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", []string{fmt.Sprintf("the request was neither acked nor delivered again within %s: nak it (with a delay) when its reply cannot be published", k.ackWait+10*time.Second)}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// validCloudEvent says what makes b not a CloudEvent in the JSON
// structured format, by the CloudEvents SDK's reading, or "".
func validCloudEvent(b []byte) string {
	var e cloudevent.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return "not a CloudEvent in the JSON structured format: " + err.Error()
	}
	if err := e.Validate(); err != nil {
		return "not a valid CloudEvent: " + err.Error()
	}
	return ""
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	p, _ := json.Marshal(x)
	q, _ := json.Marshal(y)
	return string(p) == string(q)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
