package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// partition drives the sagas of one partition. All saga state is owned by
// its goroutine (run); inputs reach it through inbox.
type partition struct {
	c     *Coordinator
	id    int
	epoch uint64 // the lease's revision when taken; 0 when pinned
	inbox chan item
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}

	sagas     map[string]*run // loaded, unfinished
	throttled map[string]bool // held back by MaxInFlight
	loaded    atomic.Int64    // len(sagas), for Status
	consumers []jetstream.ConsumeContext
}

// run is a saga loaded in memory.
type run struct {
	state  *machine.State
	seq    uint64                 // stream sequence of its last log message
	msgs   int                    // messages in its log
	timers map[string]*time.Timer // in-memory attempt deadlines, by timer id
}

// item is one input for a saga.
type item struct {
	sagaID string
	// make builds the machine input with the time it is handled.
	make func(now time.Time) machine.Input
	// msg is acked once the input is handled; nil for internal inputs.
	msg   jetstream.Msg
	start bool // a saga start: the saga may not exist yet
	// expire: the saga's retention has passed; remove it.
	expire bool
	what   string
	// query, if set, is called with the loaded saga (nil if not loaded)
	// instead of deciding anything.
	query func(*run)
}

// timerMsg is the body of a fired retry timer.
type timerMsg struct {
	SagaID string        `json:"saga_id"`
	Timer  machine.Timer `json:"timer"`
}

func (c *Coordinator) startPartition(ctx context.Context, p int, epoch uint64) (*partition, error) {
	part := &partition{c: c, id: p, epoch: epoch, inbox: make(chan item, 256), wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{}), sagas: map[string]*run{}, throttled: map[string]bool{}}
	work, err := c.js.CreateOrUpdateConsumer(ctx, streams.WorkStream, streams.PartitionConsumer(p))
	if err != nil {
		return nil, fmt.Errorf("coordinator: partition %d consumer: %w", p, err)
	}
	timers, err := c.js.CreateOrUpdateConsumer(ctx, streams.TimerStream, streams.TimerConsumer(p))
	if err != nil {
		return nil, fmt.Errorf("coordinator: partition %d timer consumer: %w", p, err)
	}
	// Recovery is the partition's first work, before any input.
	part.inbox <- item{what: "recover"}
	c.goFunc(part.loop)
	for _, cons := range []struct {
		cons jetstream.Consumer
		fn   func(jetstream.Msg)
	}{{work, part.onWork}, {timers, part.onTimer}} {
		cc, err := cons.cons.Consume(cons.fn, jetstream.PullMaxMessages(128),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				c.logger.Debug("consume", "partition", p, "error", err)
			}))
		if err != nil {
			part.stop(ctx)
			return nil, fmt.Errorf("coordinator: partition %d consume: %w", p, err)
		}
		part.consumers = append(part.consumers, cc)
	}
	return part, nil
}

// stop stops consuming and lets the goroutine finish what it has taken.
func (p *partition) stop(ctx context.Context) {
	for _, cc := range p.consumers {
		cc.Drain()
	}
	for _, cc := range p.consumers {
		select {
		case <-cc.Closed():
		case <-ctx.Done():
		}
	}
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

// enqueue hands an input to the partition's goroutine, unless it is
// stopping (then a message input is left unacked, for redelivery).
func (p *partition) enqueue(it item) {
	select {
	case p.inbox <- it:
	case <-p.quit:
		if it.msg != nil {
			_ = it.msg.Nak()
		}
	}
}

func (p *partition) loop() {
	defer close(p.done)
	defer p.stopTimers()
	recovery := time.NewTicker(p.c.cfg.RecoveryInterval)
	defer recovery.Stop()
	for {
		select {
		case it := <-p.inbox:
			p.handle(it)
		case <-p.wake:
			p.advanceThrottled()
		case <-recovery.C:
			p.recover()
		case <-p.quit:
			// Finish what was taken; what is left unacked comes back.
			for {
				select {
				case it := <-p.inbox:
					p.handle(it)
				default:
					return
				}
			}
		}
	}
}

// onWork turns a message from JETSAGA_WORK (a command or a reply) into an
// input. A message that cannot be one is logged with the reason and
// terminated: it will never become valid.
func (p *partition) onWork(m jetstream.Msg) {
	ev, err := events.Decode(m.Data())
	if err != nil {
		p.reject(m, "", "malformed message on "+m.Subject(), err)
		return
	}
	if got := streams.Partition(ev.SagaID, p.c.cfg.Topology.Partitions); got != p.id {
		p.reject(m, ev.SagaID, fmt.Sprintf("saga belongs to partition %d, not %d", got, p.id), nil)
		return
	}
	it := item{sagaID: ev.SagaID, msg: m, what: string(ev.Type())}
	switch d := ev.Data.(type) {
	case *events.ActionReply:
		if m.Subject() != streams.ReplySubject(p.id) {
			p.reject(m, ev.SagaID, "a reply on the command subject", nil)
			return
		}
		if want := events.ReplyID(d.RequestID); ev.ID != want {
			p.reject(m, ev.SagaID, fmt.Sprintf("reply id %q does not answer request %q", ev.ID, d.RequestID), nil)
			return
		}
		rep := *d
		it.make = func(now time.Time) machine.Input { return machine.Reply{Now: now, Reply: rep} }
	case *events.StartSaga:
		created, faults := d.SagaCreated, d.Faults
		it.start = true
		it.make = func(now time.Time) machine.Input { return machine.Start{Now: now, Created: created, Faults: faults} }
	case *events.OperatorCommand:
		cmd := *d
		it.make = func(now time.Time) machine.Input { return operatorInput(now, cmd) }
	default:
		p.reject(m, ev.SagaID, fmt.Sprintf("unexpected %s on %s", ev.Type(), m.Subject()), nil)
		return
	}
	p.enqueue(it)
}

func operatorInput(now time.Time, cmd events.OperatorCommand) machine.Input {
	switch cmd.Action {
	case events.ActionAbort:
		return machine.Abort{Now: now, Operator: cmd.Operator, Reason: cmd.Reason}
	case events.ActionRetry:
		return machine.RetryUndo{Now: now, Node: cmd.Node, Operator: cmd.Operator, Reason: cmd.Reason}
	case events.ActionResolve:
		return machine.Resolve{Now: now, Node: cmd.Node, Operator: cmd.Operator, Reason: cmd.Reason}
	case events.ActionFault:
		return machine.InjectFault{Now: now, Fault: *cmd.Fault, Operator: cmd.Operator, Reason: cmd.Reason}
	default:
		return machine.Abandon{Now: now, Operator: cmd.Operator, Reason: cmd.Reason}
	}
}

// onTimer turns a fired retry timer into an input.
func (p *partition) onTimer(m jetstream.Msg) {
	var tm timerMsg
	if err := json.Unmarshal(m.Data(), &tm); err != nil || streams.ValidateSagaID(tm.SagaID) != nil {
		p.reject(m, "", "malformed timer", err)
		return
	}
	t := tm.Timer
	p.enqueue(item{sagaID: tm.SagaID, msg: m, what: "timer " + t.ID(), expire: t.Kind == timerExpire,
		make: func(now time.Time) machine.Input { return machine.TimerFired{Now: now, Timer: t} }})
}

func (p *partition) reject(m jetstream.Msg, sagaID, reason string, err error) {
	p.c.stats.rejected.Add(1)
	args := []any{"partition", p.id, "subject", m.Subject(), "reason", reason}
	if sagaID != "" {
		args = append(args, "saga_id", sagaID)
	}
	if err != nil {
		args = append(args, "error", err)
	}
	p.c.logger.Warn("input rejected", args...)
	_ = m.Term()
}

// maxConflicts is how often one input is decided again after losing a
// write race before it is left for redelivery.
const maxConflicts = 3

// handle decides one input and carries out the decision.
func (p *partition) handle(it item) {
	if it.what == "recover" {
		p.recover()
		return
	}
	if it.query != nil {
		it.query(p.sagas[it.sagaID])
		return
	}
	if it.expire {
		p.expire(it)
		return
	}
	c := p.c
	logger := c.logger.With("saga_id", it.sagaID, "partition", p.id, "input", it.what)
	refreshed := false
	for range maxConflicts + 1 {
		_, cached := p.sagas[it.sagaID]
		r, err := p.load(it.sagaID, it.start)
		if errors.Is(err, streams.ErrNotFound) {
			c.stats.rejected.Add(1)
			logger.Warn("input for an unknown saga rejected")
			p.term(it)
			return
		}
		if err != nil {
			logger.Error("cannot load saga; will retry", "error", err)
			p.retryLater(it)
			return
		}
		if !cached && it.what != "recover saga" && r.state.Status != machine.StatusNew && !r.state.Status.Finished() {
			// Read afresh from the log, the saga may have decisions whose
			// commands never ran (an append whose answer was lost, a
			// previous owner's last decision): send its outstanding
			// requests and arm its timers again before anything else.
			rec := item{sagaID: it.sagaID, what: "recover saga", make: func(now time.Time) machine.Input { return machine.Recover{Now: now} }}
			if p.decide(r, rec, logger) == conflict {
				continue
			}
		}
		switch p.decide(r, it, logger) {
		case handled:
			p.ack(it)
			return
		case retry:
			return // decide left the input for later
		case rejected:
			// The state in memory may be behind the log (another owner
			// moved the saga on while this one was paused, say): a reply
			// to an attempt it has not seen is news, not a stale echo.
			// Read the log once more before throwing an input away.
			if cached && !refreshed {
				refreshed = true
				p.evict(it.sagaID)
				continue
			}
			if !c.owns(p.id) {
				p.retryLater(it) // the partition's owner decides
				return
			}
			c.stats.rejected.Add(1)
			p.ack(it)
			return
		case conflict:
			if !c.owns(p.id) {
				logger.Info("lost a write race and no longer own the partition; leaving the input to the owner")
				p.retryLater(it)
				return
			}
		}
	}
	logger.Warn("input lost the write race repeatedly; leaving it for redelivery")
	p.retryLater(it)
}

// outcome is what became of an input.
type outcome int

const (
	// handled: decided, durable and acted on (ack the input).
	handled outcome = iota
	// rejected: the machine refused the input (stale, duplicate, forged…).
	rejected
	// conflict: the append lost a race; decide again from the log.
	conflict
	// retry: the input was left for later (nak'd or re-enqueued).
	retry
)

// decide decides, appends and acts for one input on a loaded saga.
func (p *partition) decide(r *run, it item, logger *slog.Logger) outcome {
	c := p.c
	now := time.Now()
	before := r.state.InFlight()
	reserved := 0
	opts := machine.Options{MaxInFlight: c.cfg.MaxInFlightPerSaga, Source: c.source, Epoch: p.epoch, Admit: c.admit(&reserved)}
	d, err := machine.Decide(r.state, it.make(now), opts)
	if err != nil {
		c.inflight.Add(-int64(reserved))
		if errors.Is(err, machine.ErrRejected) {
			logger.Info("input rejected", "reason", err)
		} else {
			logger.Error("input refused", "error", err)
		}
		return rejected
	}
	prev := r.state.Status
	if len(d.Events) > 0 {
		ctx, cancel := c.opCtx()
		defer cancel()
		if prev == machine.StatusNew {
			// The marker comes first, so recovery can never miss a saga
			// whose log exists.
			if err := c.ix.MarkInFlight(ctx, p.id, it.sagaID); err != nil {
				c.inflight.Add(-int64(reserved))
				logger.Error("cannot mark saga in flight; will retry", "error", err)
				p.evict(it.sagaID)
				p.retryLater(it)
				return retry
			}
		}
		b, err := events.EncodeBatch(d.Events)
		if err != nil {
			c.inflight.Add(-int64(reserved))
			logger.Error("cannot encode decision", "error", err)
			return handled
		}
		// Fencing: no write without a lease that can still be trusted.
		if !c.owns(p.id) {
			c.inflight.Add(-int64(reserved))
			c.stats.fenced.Add(1)
			logger.Warn("not appending: the partition's lease is lost or may have expired")
			p.evict(it.sagaID)
			p.retryLater(it)
			return retry
		}
		seq, err := c.log.Append(ctx, it.sagaID, r.seq, b, events.ContentTypeBatch)
		if err != nil {
			c.inflight.Add(-int64(reserved))
			p.evict(it.sagaID)
			if errors.Is(err, streams.ErrConflict) {
				c.stats.conflicts.Add(1)
				logger.Warn("lost a write race; deciding again from the log", "error", err)
				return conflict
			}
			logger.Error("cannot append decision; will retry", "error", err)
			p.retryLater(it)
			return retry
		}
		r.seq = seq
		r.msgs++
		if c.cfg.AfterAppend != nil {
			c.cfg.AfterAppend(it.sagaID, r.msgs)
		}
	}
	r.state = d.State
	delta := int64(d.State.InFlight()-before) - int64(reserved)
	c.inflight.Add(delta)
	if prev == machine.StatusNew {
		c.stats.started.Add(1)
	}
	p.execute(r, d.Commands, logger)
	if d.Throttled {
		p.throttled[it.sagaID] = true
	} else {
		delete(p.throttled, it.sagaID)
	}
	if r.state.Status != prev || it.what == "recover saga" {
		p.index(r)
	}
	if r.state.Status.Finished() {
		c.stats.finished.Add(1)
		// The expiry first: until it is armed, the marker keeps the saga
		// on recovery's list.
		if p.expiry(it.sagaID, r.state.Finished) {
			ctx, cancel := c.opCtx()
			if err := c.ix.ClearInFlight(ctx, p.id, it.sagaID); err != nil {
				logger.Warn("cannot clear in-flight marker; recovery will", "error", err)
			}
			cancel()
		}
		logger.Info("saga finished", "status", r.state.Status)
		p.evict(it.sagaID)
	}
	if d.State.InFlight() < before && c.cfg.MaxInFlight > 0 {
		c.wakeAll()
	}
	return handled
}

// load returns the saga from memory, or reads and folds its log. A start
// of a saga with no log gets an empty state.
func (p *partition) load(id string, start bool) (*run, error) {
	if r, ok := p.sagas[id]; ok {
		return r, nil
	}
	ctx, cancel := p.c.opCtx()
	defer cancel()
	entries, err := p.c.log.Read(ctx, id, 0)
	if errors.Is(err, streams.ErrNotFound) && start {
		return p.keep(id, &run{state: machine.New(id)}), nil
	}
	if err != nil {
		return nil, err
	}
	s := machine.New(id)
	for _, e := range entries {
		evs, err := events.DecodeBatch(e.Data)
		if err != nil {
			return nil, fmt.Errorf("saga %s log message %d: %w", id, e.Seq, err)
		}
		if err := s.ApplyAll(evs); err != nil {
			return nil, fmt.Errorf("saga %s log message %d: %w", id, e.Seq, err)
		}
	}
	r := &run{state: s, msgs: len(entries)}
	if n := len(entries); n > 0 {
		r.seq = entries[n-1].Seq
	}
	if s.Status.Finished() {
		return r, nil // not kept: nothing will happen to it
	}
	p.c.inflight.Add(int64(s.InFlight()))
	return p.keep(id, r), nil
}

func (p *partition) keep(id string, r *run) *run {
	r.timers = map[string]*time.Timer{}
	p.sagas[id] = r
	p.loaded.Store(int64(len(p.sagas)))
	return r
}

// evict forgets a saga (finished, or to be read again from the log).
func (p *partition) evict(id string) {
	r, ok := p.sagas[id]
	if !ok {
		return
	}
	for _, t := range r.timers {
		t.Stop()
	}
	if !r.state.Status.Finished() {
		p.c.inflight.Add(-int64(r.state.InFlight()))
	}
	delete(p.sagas, id)
	delete(p.throttled, id)
	p.loaded.Store(int64(len(p.sagas)))
}

// stopTimers forgets the partition's sagas when it stops: their timers,
// and their requests in the coordinator's in-flight count.
func (p *partition) stopTimers() {
	for _, r := range p.sagas {
		for _, t := range r.timers {
			t.Stop()
		}
		p.c.inflight.Add(-int64(r.state.InFlight()))
	}
}

// execute carries out a durable decision's commands. Requests are
// published together and their acks awaited together. If any command
// fails, the saga is recovered a little later, which sends every
// outstanding request and arms every timer again.
func (p *partition) execute(r *run, cmds []machine.Command, logger interface{ Warn(string, ...any) }) {
	c := p.c
	id := r.state.SagaID
	var futures []jetstream.PubAckFuture
	failed := false
	now := time.Now().UTC()
	for _, cmd := range cmds {
		switch cmd := cmd.(type) {
		case machine.SendRequest:
			if cmd.NotBefore.After(now) {
				p.sendLater(r, cmd)
				continue
			}
			f, err := p.sendRequest(id, cmd, now)
			if err != nil {
				logger.Warn("cannot send request", "node", cmd.Request.Node, "error", err)
				failed = true
				continue
			}
			futures = append(futures, f)
		case machine.ArmTimer:
			if cmd.Timer.Kind == machine.TimerTimeout || time.Until(cmd.At) < scheduleAtLeast {
				p.armInMemory(r, cmd)
				continue
			}
			f, err := p.schedule(id, cmd)
			if err != nil {
				logger.Warn("cannot schedule timer", "timer", cmd.Timer.ID(), "error", err)
				failed = true
				continue
			}
			futures = append(futures, f)
		}
	}
	timeout := time.NewTimer(c.cfg.RequestTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			logger.Warn("publish failed", "subject", f.Msg().Subject, "error", err)
			failed = true
		case <-timeout.C:
			logger.Warn("publish not acknowledged in time", "subject", f.Msg().Subject)
			failed = true
		}
	}
	if failed {
		p.recoverLater(id)
	}
}

// sendRequest publishes an action or undo request.
func (p *partition) sendRequest(sagaID string, cmd machine.SendRequest, now time.Time) (jetstream.PubAckFuture, error) {
	req := cmd.Request
	req.ReplyTo = streams.ReplySubject(p.id)
	b, err := events.Encode(events.Event{ID: cmd.ID, Source: p.c.source, SagaID: sagaID, Time: now, Data: &req})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(streams.RequestSubject(cmd.Action))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, cmd.ID)
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	return p.c.js.PublishMsgAsync(m)
}

// sendLater sends a request held back by an injected delay when its time
// comes. The delay is in the log (node.started's not_before), so recovery
// holds the request back again; a request lost here is sent by recovery.
func (p *partition) sendLater(r *run, cmd machine.SendRequest) {
	id := r.state.SagaID
	key := "send:" + cmd.ID
	if old, ok := r.timers[key]; ok {
		old.Stop()
	}
	r.timers[key] = time.AfterFunc(time.Until(cmd.NotBefore), func() {
		f, err := p.sendRequest(id, cmd, time.Now().UTC())
		if err == nil {
			select {
			case <-f.Ok():
				return
			case err = <-f.Err():
			case <-time.After(p.c.cfg.RequestTimeout):
				err = errors.New("no acknowledgement in time")
			}
		}
		p.c.logger.Warn("cannot send a delayed request; recovering the saga", "saga_id", id, "request", cmd.ID, "error", err)
		p.recoverLater(id)
	})
}

// scheduleAtLeast is the shortest retry wait armed as a message schedule.
// Schedules fire with about a second's granularity, so shorter waits are
// armed in memory; like attempt deadlines, they are in the log
// (node.attempt_failed's retry_at) and re-armed on recovery.
const scheduleAtLeast = 5 * time.Second

// armInMemory arms a timer in this process. Its time is in the log, so a
// restarted coordinator re-arms it on recovery.
func (p *partition) armInMemory(r *run, cmd machine.ArmTimer) {
	id, t := r.state.SagaID, cmd.Timer
	if old, ok := r.timers[t.ID()]; ok {
		old.Stop()
	}
	r.timers[t.ID()] = time.AfterFunc(time.Until(cmd.At), func() {
		p.enqueue(item{sagaID: id, what: "timer " + t.ID(),
			make: func(now time.Time) machine.Input { return machine.TimerFired{Now: now, Timer: t} }})
	})
}

// schedule arms a retry as a message schedule in JETSAGA_TIMERS. The
// schedule's subject is fixed for the saga and timer, so arming it again
// (on recovery) replaces it.
func (p *partition) schedule(sagaID string, cmd machine.ArmTimer) (jetstream.PubAckFuture, error) {
	h := fnv.New64a()
	h.Write([]byte(sagaID))
	h.Write([]byte{0})
	h.Write([]byte(cmd.Timer.ID()))
	b, err := json.Marshal(timerMsg{SagaID: sagaID, Timer: cmd.Timer})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(streams.TimerScheduleSubject(p.id, strconv.FormatUint(h.Sum64(), 16)))
	m.Data = b
	at := cmd.At
	if min := time.Now().Add(time.Second); at.Before(min) {
		at = min // a schedule in the past may be refused
	}
	m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", streams.TimerFireSubject(p.id))
	m.Header.Set("Nats-Schedule-TTL", "1h") // fired timers expire
	return p.c.js.PublishMsgAsync(m)
}

// index writes the saga's summary. The index is derived from the log:
// a failure is logged, and recovery writes it again.
func (p *partition) index(r *run) {
	s := r.state
	if s.Created == nil {
		return
	}
	sum := index.Summary{ID: s.SagaID, Name: s.Created.Definition.Name, Status: string(s.Status), Partition: p.id,
		IdempotencyKey: s.Created.IdempotencyKey, Metadata: s.Created.Metadata, Created: s.CreatedAt, Updated: s.Updated}
	if s.Unwinding != nil {
		sum.Node = s.Unwinding.Node
	}
	ctx, cancel := p.c.opCtx()
	defer cancel()
	if err := p.c.ix.Put(ctx, sum); err != nil {
		p.c.logger.Warn("cannot update saga index", "saga_id", s.SagaID, "error", err)
	}
}

func (p *partition) ack(it item) {
	if it.msg != nil {
		if err := it.msg.Ack(); err != nil {
			p.c.logger.Debug("ack failed; the input will come again and be rejected as stale", "saga_id", it.sagaID, "error", err)
		}
	}
}

func (p *partition) term(it item) {
	if it.msg != nil {
		_ = it.msg.Term()
	}
}

// retryLater leaves an input for later: a message is redelivered after a
// delay; an internal input is enqueued again after one.
func (p *partition) retryLater(it item) {
	if it.msg != nil {
		_ = it.msg.NakWithDelay(time.Second)
		return
	}
	time.AfterFunc(time.Second, func() { p.enqueue(it) })
}

// recoverLater recovers a saga (re-sends its requests, re-arms its timers)
// after a short delay.
func (p *partition) recoverLater(id string) {
	time.AfterFunc(time.Second, func() {
		p.enqueue(item{sagaID: id, what: "recover saga", make: func(now time.Time) machine.Input { return machine.Recover{Now: now} }})
	})
}

// advanceThrottled gives held-back sagas a chance to start nodes.
func (p *partition) advanceThrottled() {
	for id := range p.throttled {
		p.handle(item{sagaID: id, what: "advance", make: func(now time.Time) machine.Input { return machine.Advance{Now: now} }})
	}
}

// recover resumes every saga of the partition marked in flight that is not
// loaded here. A saga that fails to load is reported and tried again on the
// next pass; it does not stop the others.
func (p *partition) recover() {
	c := p.c
	pass := RecoveryPass{Partition: p.id, At: time.Now()}
	defer func() { c.stats.pass(pass) }()
	ctx, cancel := c.opCtx()
	ids, err := c.ix.InFlight(ctx, p.id)
	cancel()
	if err != nil {
		c.stats.recoveryFailures.Add(1)
		pass.Failed++
		c.stats.failure(fmt.Sprintf("partition %d: list in-flight sagas: %v", p.id, err))
		c.logger.Error("recovery: cannot list in-flight sagas", "partition", p.id, "error", err)
		return
	}
	pass.Listed = len(ids)
	for _, id := range ids {
		if _, ok := p.sagas[id]; ok {
			c.stats.skipped.Add(1)
			pass.Skipped++
			continue
		}
		r, err := p.load(id, false)
		switch {
		case errors.Is(err, streams.ErrNotFound):
			// Marked, but the start has not reached the log yet: its
			// command is still to be handled.
			pass.Skipped++
			continue
		case err != nil:
			c.stats.recoveryFailures.Add(1)
			pass.Failed++
			c.stats.failure(fmt.Sprintf("saga %s: %v", id, err))
			c.logger.Error("recovery: cannot load saga; will try again next pass", "saga_id", id, "error", err)
			continue
		case r.state.Status.Finished():
			c.stats.observedFinished.Add(1)
			pass.Finished++
			p.index(r)
			if !p.expiry(id, r.state.Finished) {
				continue
			}
			ctx, cancel := c.opCtx()
			if err := c.ix.ClearInFlight(ctx, p.id, id); err != nil {
				c.logger.Warn("recovery: cannot clear in-flight marker", "saga_id", id, "error", err)
			}
			cancel()
			continue
		}
		c.stats.recovered.Add(1)
		pass.Recovered++
		c.stats.recoveredSaga(id)
		p.handle(item{sagaID: id, what: "recover saga", make: func(now time.Time) machine.Input { return machine.Recover{Now: now} }})
	}
}
