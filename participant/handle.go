package participant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/barrier"
	"github.com/jetsaga/jetsaga/saga"
)

// result is what becomes of one delivery of a request: a reply, or (nak)
// no reply and the request comes back after nakDelay.
type result struct {
	nak      bool
	nakDelay time.Duration

	ok         bool
	output     json.RawMessage
	err        *events.Error
	retryAfter time.Duration
}

func okResult(output json.RawMessage) result { return result{ok: true, output: output} }

func errResult(kind events.ErrorKind, msg string) result {
	return result{err: &events.Error{Kind: kind, Message: msg}}
}

func nakResult(d time.Duration) result { return result{nak: true, nakDelay: d} }

// handle takes one delivery of a request from decoding to ack.
func (p *Participant) handle(a *action, msg jetstream.Msg) {
	a.count.inFlight.Add(1)
	defer a.count.inFlight.Add(-1)
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	ev, req, reason := decodeRequest(msg.Data(), a.name)
	if reason != "" {
		p.metrics.rejectMalformed(a.name)
		a.count.malformed.Add(1)
		// Coming back would not make it any better: terminate it.
		p.log.Warn("participant: malformed request terminated", "action", a.name,
			"subject", msg.Subject(), "delivery", delivered, "reason", reason)
		if err := msg.TermWithReason(reason); err != nil {
			p.log.Warn("participant: terminate malformed request", "action", a.name, "error", err)
		}
		return
	}
	r := &Request{
		ID: ev.ID, SagaID: ev.SagaID, Node: req.Node, Action: req.Action, Undo: req.Undo,
		Op: req.Op, Attempt: req.Attempt, IdempotencyKey: req.IdempotencyKey,
		Params: req.Params, Outputs: req.Outputs, Skipped: req.Skipped, Output: req.Output,
		Deadline: req.Deadline, TraceParent: ev.TraceParent,
	}
	if r.Op == events.OpUndo && len(r.Output) == 0 {
		r.Output = json.RawMessage("null")
	}
	log := p.log.With("saga_id", r.SagaID, "node", r.Node, "op", string(r.Op),
		"attempt", r.Attempt, "action", a.name, "delivery", delivered)
	h := a.do
	if r.Op == events.OpUndo {
		h = a.undo
	}

	var res result
	start := time.Now()
	defer func() { p.metrics.observe(a.name, r.Op, res, time.Since(start)) }()
	if p.barrier != nil {
		op, key, legacy := r.Op, barrier.Key(a.name, r.SagaID, r.Node), barrier.LegacyKey(r.SagaID, r.Node)
		if a.do == nil && r.Op == events.OpUndo {
			// An undo-only action (an await node's undo) undoes no run of
			// a participant's: the barrier keeps it idempotent like an
			// action, under a key of its own ("@" is in no node name),
			// without the rules that tie an undo to its action.
			op, key, legacy = events.OpDo, barrier.Key(a.name, r.SagaID, r.Node+"/@undo"), barrier.LegacyKey(r.SagaID, r.Node+"/@undo")
		}
		if !p.cfg.LegacyBarrierKeys {
			legacy = ""
		}
		res = p.guarded(log, msg, r, h, delivered, op, key, legacy)
	} else {
		res = p.unguarded(log, msg, r, h)
	}
	if p.finish(log, msg, ev, r, req.ReplyTo, res, delivered) {
		a.count.served.Add(1)
		if !res.ok {
			a.count.errors.Add(1)
		}
	}
}

// decodeRequest reads an action request for action; reason says why the
// message is not one.
func decodeRequest(b []byte, action string) (events.Event, *events.ActionRequest, string) {
	ev, err := events.Decode(b)
	if err != nil {
		return ev, nil, err.Error()
	}
	req, ok := ev.Data.(*events.ActionRequest)
	if !ok {
		return ev, nil, fmt.Sprintf("event %s has type %s, want %s", ev.ID, ev.Type(), events.TypeActionRequest)
	}
	if req.Action != action {
		return ev, nil, fmt.Sprintf("request %s is for action %q but came on the subject of action %q, which is the only one served here", ev.ID, req.Action, action)
	}
	if reason := checkReplySubject(req.ReplyTo); reason != "" {
		return ev, nil, fmt.Sprintf("request %s: reply_to %q %s", ev.ID, req.ReplyTo, reason)
	}
	return ev, req, ""
}

// checkReplySubject says what is wrong with s as a subject to publish to.
func checkReplySubject(s string) string {
	if strings.ContainsAny(s, " \t\r\n") {
		return "contains whitespace"
	}
	for tok := range strings.SplitSeq(s, ".") {
		switch tok {
		case "":
			return "has an empty token"
		case "*", ">":
			return "has a wildcard"
		}
	}
	return ""
}

// unguarded runs the handler for every delivery: the barrier is off.
func (p *Participant) unguarded(log *slog.Logger, msg jetstream.Msg, r *Request, h Handler) result {
	if h == nil {
		return noUndo(r)
	}
	if late(r) {
		return lateResult(log, r)
	}
	o := p.run(log, msg, r, h, nil)
	if o.lockLost || o.stopped {
		return nakResult(0)
	}
	return o.result
}

// guarded runs the handler under the idempotency barrier (see decide).
//
// legacy, if not empty, is where an earlier release kept the node's
// record: read when key has none, and the first write moves it to key.
func (p *Participant) guarded(log *slog.Logger, msg jetstream.Msg, r *Request, h Handler, delivered uint64, op events.Op, key, legacy string) result {
	log = log.With("barrier_key", key)
	// Each round reads the record and tries one compare-and-set; a lost
	// race (or a stale read) means another round.
	const rounds = 8
	for round := range rounds {
		var rec *barrier.Record
		var rev uint64
		// Most action requests are the first for their node: the first
		// round assumes there is no record and creates one straight away,
		// which fails if there is one; that costs a read only then.
		assumed := round == 0 && op == events.OpDo && legacy == ""
		if !assumed {
			ctx, cancel := p.ioContext()
			var err error
			rec, rev, err = p.barrier.get(ctx, key)
			if err == nil && rec == nil && legacy != "" {
				rec, _, err = p.barrier.get(ctx, legacy) // rev stays 0: the write creates key
			}
			cancel()
			if errors.Is(err, errCorrupt) {
				log.Error("participant: barrier record unreadable; the request waits for an operator to fix or delete it", "error", err)
				return nakResult(corruptDelay)
			}
			if err != nil {
				log.Warn("participant: read barrier", "error", err)
				return nakResult(retryDelay(delivered))
			}
		}
		now := time.Now() // after the read: a lock is never seen expired early
		switch barrier.Decide(op, r.Attempt, rec, now) {
		case barrier.VerdictWait:
			log.Debug("participant: another worker holds the barrier lock; request comes back later",
				"state", rec.State, "owner", rec.Owner, "lock_until", rec.LockUntil)
			return nakResult(min(max(rec.LockUntil.Sub(now), waitMin), waitMax))
		case barrier.VerdictReplyOutput:
			log.Info("participant: action done already; replying its recorded output without running it")
			return okResult(rec.Output)
		case barrier.VerdictReplyError:
			log.Info("participant: action failed already; replying its recorded error without running it")
			if rec.Error == nil {
				return errResult(events.ErrorPermanent, "action failed permanently before")
			}
			return result{err: rec.Error}
		case barrier.VerdictRefuse:
			log.Warn("participant: action request after its undo; refused", "state", rec.State)
			return errResult(events.ErrorPermanent, fmt.Sprintf("action arrived after its undo (barrier state %s): refused, never run", rec.State))
		case barrier.VerdictUndone:
			log.Info("participant: undone already; replying OK without running the undo")
			return okResult(nil)
		case barrier.VerdictCorrupt:
			log.Error("participant: barrier record in a state this version does not know; the request waits", "state", rec.State)
			return nakResult(corruptDelay)
		case barrier.VerdictTombstone:
			tomb := &barrier.Record{State: barrier.StateTombstone, RequestID: r.ID, Updated: now}
			ctx, cancel := p.ioContext()
			_, err := p.barrier.put(ctx, key, tomb, rev)
			cancel()
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				log.Warn("participant: write barrier tombstone", "error", err)
				return nakResult(retryDelay(delivered))
			}
			log.Info("participant: undo of an action that never ran: recorded a tombstone, the undo handler is not called and the action will be refused")
			return okResult(nil)
		case barrier.VerdictRun:
			if h == nil {
				return noUndo(r)
			}
			if late(r) {
				if assumed {
					continue // a recorded outcome may still be replied
				}
				return lateResult(log, r)
			}
			held := barrier.Acquired(op, r.Attempt, rec, p.owner, r.ID, now.Add(p.cfg.LockTTL), now)
			ctx, cancel := p.ioContext()
			newRev, err := p.barrier.put(ctx, key, held, rev)
			cancel()
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				log.Warn("participant: take barrier lock", "error", err)
				return nakResult(retryDelay(delivered))
			}
			if rec != nil {
				log.Info("participant: taking over an interrupted run", "state", rec.State, "owner", rec.Owner)
			}
			l := &lease{key: key, rev: newRev, rec: held, ttl: p.cfg.LockTTL}
			o := p.run(log, msg, r, h, l)
			return p.settle(log, op, rec, l, o, delivered)
		}
	}
	log.Warn("participant: barrier changed under every attempt to update it; request comes back later")
	return nakResult(retryDelay(delivered))
}

// settle records how the run ended and releases the lock.
func (p *Participant) settle(log *slog.Logger, op events.Op, prior *barrier.Record, l *lease, o outcome, delivered uint64) result {
	if o.lockLost {
		// Another worker may own the key now: leave it alone. The request
		// comes back and finds whatever that worker recorded.
		log.Warn("participant: barrier lock lost while the handler ran; request comes back later")
		return nakResult(retryDelay(delivered))
	}
	kind := barrier.OutcomeRetry
	switch {
	case o.stopped:
		kind = barrier.OutcomeStopped
	case o.result.ok:
		kind = barrier.OutcomeOK
	case o.result.err.Kind == events.ErrorPermanent:
		kind = barrier.OutcomePermanent
	}
	next := barrier.Settled(op, prior, l.rec, kind, o.result.output, o.result.err, l.rec.RequestID, time.Now())
	ctx, cancel := p.ioContext()
	defer cancel()
	var err error
	if next == nil {
		err = p.barrier.del(ctx, l.key, l.rev)
	} else {
		_, err = p.barrier.put(ctx, l.key, next, l.rev)
	}
	if err != nil {
		// The reply still tells the truth about this run; the record
		// keeps the lock, which expires, and a repeat runs again.
		log.Warn("participant: record outcome in barrier", "error", err)
	}
	if o.stopped {
		return nakResult(0)
	}
	return o.result
}

func noUndo(r *Request) result {
	if r.Op == events.OpDo {
		return errResult(events.ErrorPermanent, fmt.Sprintf("action %s is registered as an undo only (RegisterUndo): it runs no action", r.Action))
	}
	return errResult(events.ErrorPermanent, fmt.Sprintf("no undo registered for action %s", r.Action))
}

func late(r *Request) bool { return !r.Deadline.IsZero() && !time.Now().Before(r.Deadline) }

func lateResult(log *slog.Logger, r *Request) result {
	log.Warn("participant: request's deadline passed before its handler could start; not run", "deadline", r.Deadline)
	return errResult(events.ErrorTransient, fmt.Sprintf("deadline %s passed before the handler started", r.Deadline.Format(time.RFC3339Nano)))
}

// outcome is how a handler's run ended.
type outcome struct {
	result result
	// stopped: cancelled by Stop; lockLost: cancelled because the barrier
	// lock expired. Either way the error is not replied.
	stopped, lockLost bool
}

// run calls h for r, reporting progress to JetStream and renewing the
// barrier lock l (nil without the barrier) while it runs.
func (p *Participant) run(log *slog.Logger, msg jetstream.Msg, r *Request, h Handler, l *lease) outcome {
	ctx := p.base
	if !r.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, r.Deadline)
		defer cancel()
	}
	ctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	ctx, endSpan := p.startSpan(ctx, r)
	var o outcome
	defer func() { endSpan(o.result) }()
	ctx = withInflight(ctx, &inflight{req: r, progress: msg.InProgress})

	quit := make(chan struct{})
	keeper := make(chan struct{})
	go func() { // owned by run, which waits for keeper
		defer close(keeper)
		p.keepAlive(log, msg, l, cancelCause, quit)
	}()
	start := time.Now()
	out, err := call(ctx, h, r)
	close(quit)
	<-keeper

	switch {
	case err == nil:
		b, merr := json.Marshal(out)
		if merr != nil {
			log.Error("participant: handler's output is not JSON-encodable", "error", merr)
			o.result = errResult(events.ErrorPermanent, fmt.Sprintf("output of action %s is not JSON-encodable: %v", r.Action, merr))
			break
		}
		o.result = okResult(b)
		log.Debug("participant: handler succeeded", "took", time.Since(start))
	case errors.Is(context.Cause(ctx), ErrStopping):
		o.stopped = true
		log.Warn("participant: handler cancelled by Stop; request given back", "error", err)
	case errors.Is(context.Cause(ctx), ErrLockLost):
		o.lockLost = true
	default:
		o.result = errorResult(err)
		log.Info("participant: handler failed", "kind", o.result.err.Kind, "error", err, "took", time.Since(start))
		var pe *panicError
		if errors.As(err, &pe) {
			log.Error("participant: handler panicked", "panic", pe.value, "stack", string(pe.stack))
		}
	}
	return o
}

// keepAlive, until quit, tells JetStream msg is in progress and renews the
// barrier lock l (nil without the barrier); if l expires without renewal
// it cancels the handler with cause ErrLockLost.
func (p *Participant) keepAlive(log *slog.Logger, msg jetstream.Msg, l *lease, cancel context.CancelCauseFunc, quit <-chan struct{}) {
	t := time.NewTicker(p.progressEvery())
	defer t.Stop()
	var lockTimer *time.Timer
	var expired <-chan time.Time
	if l != nil {
		lockTimer = time.NewTimer(time.Until(l.rec.LockUntil))
		defer lockTimer.Stop()
		expired = lockTimer.C
	}
	for {
		select {
		case <-quit:
			return
		case <-expired:
			log.Warn("participant: barrier lock expired without renewal; cancelling the handler", "lock_until", l.rec.LockUntil)
			cancel(ErrLockLost)
			expired, l = nil, nil
		case <-t.C:
			if err := msg.InProgress(); err != nil {
				log.Debug("participant: report progress", "error", err)
			}
			if l == nil {
				continue
			}
			ctx, c := context.WithTimeout(context.Background(), p.progressEvery())
			err := l.renew(ctx, p.barrier)
			c()
			if err != nil {
				log.Warn("participant: renew barrier lock", "error", err, "lock_until", l.rec.LockUntil)
				continue
			}
			lockTimer.Reset(time.Until(l.rec.LockUntil))
		}
	}
}

// call runs h, turning a panic into an error.
func call(ctx context.Context, h Handler, r *Request) (out any, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return h(ctx, r)
}

// errorResult maps a handler's error to a reply's.
func errorResult(err error) result {
	var pe *PermanentError
	if errors.As(err, &pe) || errors.Is(err, ErrUnknownNode) || errors.Is(err, ErrDecode) {
		return errResult(events.ErrorPermanent, err.Error())
	}
	res := errResult(events.ErrorTransient, err.Error())
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.Delay > 0 {
		res.retryAfter = ra.Delay
	}
	return res
}

// finish replies (then acks) or naks.
func (p *Participant) finish(log *slog.Logger, msg jetstream.Msg, ev events.Event, r *Request, replyTo string, res result, delivered uint64) (replied bool) {
	if res.nak {
		var err error
		if res.nakDelay > 0 {
			err = msg.NakWithDelay(res.nakDelay)
		} else {
			err = msg.Nak()
		}
		if err != nil {
			log.Warn("participant: give request back", "error", err)
		}
		return false
	}
	reply := &events.ActionReply{
		RequestID: ev.ID, Op: r.Op, Node: r.Node, Attempt: r.Attempt,
		OK: res.ok, Error: res.err, RetryAfter: saga.Duration(res.retryAfter),
	}
	if res.ok && r.Op == events.OpDo {
		reply.Output = nullIfEmpty(res.output)
	}
	if err := p.publishReply(ev, replyTo, reply); err != nil {
		d := retryDelay(delivered)
		log.Warn("participant: publish reply; request comes back", "reply_to", replyTo, "error", err, "retry_in", d)
		if err := msg.NakWithDelay(d); err != nil {
			log.Warn("participant: give request back", "error", err)
		}
		return false
	}
	if err := msg.Ack(); err != nil {
		// It comes back after AckWait and is answered again (the same
		// way, with the barrier); the reply is deduplicated.
		log.Warn("participant: ack request", "error", err)
	}
	return true
}

func (p *Participant) publishReply(req events.Event, replyTo string, reply *events.ActionReply) error {
	id := events.ReplyID(req.ID)
	b, err := events.Encode(events.Event{
		ID: id, Source: p.source, SagaID: req.SagaID, Time: time.Now(),
		TraceParent: req.TraceParent, Data: reply,
	})
	if err != nil {
		return err
	}
	m := nats.NewMsg(replyTo)
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	ctx, cancel := p.ioContext()
	defer cancel()
	_, err = p.js.PublishMsg(ctx, m)
	return err
}

// ioContext bounds one NATS operation on behalf of a request. It is not
// cancelled by Stop: recording an outcome must finish.
func (p *Participant) ioContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(p.base), ioTimeout)
}

// retryDelay is how long a request waits after its n-th delivery failed
// for want of NATS.
func retryDelay(n uint64) time.Duration {
	d := retryBase
	for i := uint64(1); i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}
