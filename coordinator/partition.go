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
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
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
	// appending counts appends in flight; their landings come back
	// through inbox.
	appending int
	// requeue holds inputs to handle before the next from inbox: those
	// that waited behind a saga's append, or whose saga was evicted.
	requeue []item
}

// run is a saga loaded in memory.
type run struct {
	state  *machine.State
	seq    uint64                 // stream sequence of its last log message
	msgs   int                    // messages in its log
	timers map[string]*time.Timer // in-memory attempt deadlines, by timer id
	// busy: a decision's append is in flight; the saga's next inputs
	// wait in queue, so each decision builds on the durable one before.
	busy  bool
	queue []item
	// sent is when each outstanding request went out, for the latency
	// metrics (nil without them).
	sent map[string]time.Time
	// spans are the open spans of outstanding requests (with tracing).
	spans map[string]trace.Span
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
	// landed, if set, is the outcome of an append in flight.
	landed *landing
	// attempt counts the decisions of this input lost to write races;
	// refreshed: the log was read again after the input was rejected.
	attempt   int
	refreshed bool
}

// landing is a decision whose append was in flight, and how it ended.
type landing struct {
	run      *run
	it       item
	d        machine.Decision
	prev     machine.Status
	paused   bool
	before   int // requests in flight before the decision
	reserved int // slots reserved by Options.Admit
	seq      uint64
	err      error
	// markErr: the in-flight marker of a new saga, written alongside its
	// first append, failed.
	markErr error
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
			jetstream.PullHeartbeat(streams.PullHeartbeat), jetstream.PullExpiry(streams.PullExpiry),
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
		p.drain()
		select {
		case it := <-p.inbox:
			p.handle(it)
		case <-p.wake:
			p.advanceThrottled()
		case <-recovery.C:
			p.recover()
		case <-p.quit:
			// Finish what was taken, and wait for the appends in flight;
			// what is left unacked comes back.
			for {
				p.drain()
				if p.appending == 0 {
					select {
					case it := <-p.inbox:
						p.handle(it)
						continue
					default:
						return
					}
				}
				p.handle(<-p.inbox)
			}
		}
	}
}

// drain handles the inputs put back by evictions and landings.
func (p *partition) drain() {
	for len(p.requeue) > 0 {
		it := p.requeue[0]
		p.requeue[0] = item{}
		p.requeue = p.requeue[1:]
		p.handle(it)
	}
	p.requeue = nil
}

// onWork turns a message from JETSAGA_WORK (a command or a reply) into an
// input. A message that cannot be one is logged with the reason and
// terminated: it will never become valid.
func (p *partition) onWork(m jetstream.Msg) {
	ev, err := events.Decode(m.Data())
	if err != nil {
		p.reject(m, rejectMalformed, "", "malformed message on "+m.Subject(), err)
		return
	}
	if got := streams.Partition(ev.SagaID, p.c.cfg.Topology.Partitions); got != p.id {
		p.reject(m, rejectWrongPartition, ev.SagaID, fmt.Sprintf("saga belongs to partition %d, not %d", got, p.id), nil)
		return
	}
	it := item{sagaID: ev.SagaID, msg: m, what: string(ev.Type())}
	switch d := ev.Data.(type) {
	case *events.ActionReply:
		if m.Subject() != streams.ReplySubject(p.id) {
			p.reject(m, rejectMisrouted, ev.SagaID, "a reply on the command subject", nil)
			return
		}
		if want := events.ReplyID(d.RequestID); ev.ID != want {
			p.reject(m, rejectForged, ev.SagaID, fmt.Sprintf("reply id %q does not answer request %q", ev.ID, d.RequestID), nil)
			return
		}
		rep := *d
		it.make = func(now time.Time) machine.Input { return machine.Reply{Now: now, Reply: rep} }
	case *events.StartSaga:
		created, faults, tp := d.SagaCreated, d.Faults, ev.TraceParent
		it.start = true
		it.make = func(now time.Time) machine.Input {
			return machine.Start{Now: now, Created: created, Faults: faults, TraceParent: tp}
		}
	case *events.OperatorCommand:
		cmd := *d
		if _, err := machine.OperatorInput(time.Now(), cmd); err != nil {
			p.reject(m, rejectMalformed, ev.SagaID, "an operator command jetsaga does not know", err)
			return
		}
		it.make = func(now time.Time) machine.Input {
			in, _ := machine.OperatorInput(now, cmd) // checked above
			return in
		}
	default:
		p.reject(m, rejectMisrouted, ev.SagaID, fmt.Sprintf("unexpected %s on %s", ev.Type(), m.Subject()), nil)
		return
	}
	p.enqueue(it)
}

// onTimer turns a fired retry timer into an input.
func (p *partition) onTimer(m jetstream.Msg) {
	var tm timerMsg
	if err := json.Unmarshal(m.Data(), &tm); err != nil || streams.ValidateSagaID(tm.SagaID) != nil {
		p.reject(m, rejectMalformed, "", "malformed timer", err)
		return
	}
	t := tm.Timer
	p.enqueue(item{sagaID: tm.SagaID, msg: m, what: "timer " + t.ID(), expire: t.Kind == timerExpire,
		make: func(now time.Time) machine.Input { return machine.TimerFired{Now: now, Timer: t} }})
}

func (p *partition) reject(m jetstream.Msg, kind, sagaID, reason string, err error) {
	p.c.stats.rejected.Add(1)
	p.c.metrics.reject(kind)
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
	switch {
	case it.what == "recover":
		p.recover()
		return
	case it.landed != nil:
		p.land(it.landed)
		return
	}
	// A saga's inputs (and queries) wait for its append in flight.
	if r, ok := p.sagas[it.sagaID]; ok && r.busy {
		r.queue = append(r.queue, it)
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
	p.step(it)
}

// logger is the coordinator's logger with the input's attributes.
func (p *partition) logger(it item) *slog.Logger {
	return p.c.logger.With("saga_id", it.sagaID, "partition", p.id, "input", it.what)
}

// step loads the input's saga and decides the input.
func (p *partition) step(it item) {
	c := p.c
	_, cached := p.sagas[it.sagaID]
	// A start is first decided as if the saga were new, without a read:
	// the append of its first message (expected position 0) fails if the
	// log exists, and the next attempt reads it.
	r, err := p.load(it.sagaID, it.start, it.start && it.attempt == 0)
	if errors.Is(err, streams.ErrNotFound) {
		c.stats.rejected.Add(1)
		c.metrics.reject(rejectUnknownSaga)
		p.logger(it).Warn("input rejected", "reason", "no such saga")
		p.term(it)
		return
	}
	if err != nil {
		p.logger(it).Error("cannot load saga; will retry", "error", err)
		p.retryLater(it)
		return
	}
	if !cached && it.what != "recover saga" && r.state.Status != machine.StatusNew && !r.state.Status.Finished() {
		// Read afresh from the log, the saga may have decisions whose
		// commands never ran (an append whose answer was lost, a previous
		// owner's last decision): send its outstanding requests and arm
		// its timers again before anything else. Its marker may be
		// missing too (a start whose marker write failed after its first
		// append): write it again.
		ctx, cancel := c.opCtx()
		err := c.ix.MarkInFlight(ctx, p.id, it.sagaID)
		cancel()
		if err != nil {
			p.logger(it).Error("cannot mark saga in flight; will retry", "error", err)
			p.evict(it.sagaID)
			p.retryLater(it)
			return
		}
		r.queue = append([]item{it}, r.queue...)
		it = item{sagaID: it.sagaID, what: "recover saga", make: func(now time.Time) machine.Input { return machine.Recover{Now: now} }}
	}
	p.decide(r, it, !cached)
}

// decide decides one input on a loaded saga. A decision with events is
// appended asynchronously: the saga waits (busy) until it lands, while the
// partition goes on with other sagas' inputs. fresh: the saga was just
// read from its log.
func (p *partition) decide(r *run, it item, fresh bool) {
	c := p.c
	before := r.state.InFlight()
	reserved := 0
	opts := machine.Options{MaxInFlight: c.cfg.MaxInFlightPerSaga, Source: c.source, Epoch: p.epoch, Admit: c.admit(&reserved)}
	d, err := machine.Decide(r.state, it.make(time.Now()), opts)
	if err != nil {
		c.inflight.Add(-int64(reserved))
		p.rejected(r, it, fresh, err)
		return
	}
	l := &landing{run: r, it: it, d: d, prev: r.state.Status, paused: r.state.Paused, before: before, reserved: reserved}
	if len(d.Events) == 0 {
		p.apply(l)
		return
	}
	fail := func(msg string, err error) {
		c.inflight.Add(-int64(reserved))
		p.logger(it).Error(msg, "error", err)
		p.evict(it.sagaID)
		p.retryLater(it)
	}
	var marked jetstream.PubAckFuture
	if l.prev == machine.StatusNew {
		// The in-flight marker is written alongside the log's first
		// append, and the start is acknowledged only once both are
		// durable: until then the start comes again, and a saga read
		// afresh from its log is marked again (step), so recovery never
		// misses a saga in flight.
		if marked, err = c.ix.MarkInFlightAsync(p.id, it.sagaID); err != nil {
			fail("cannot mark saga in flight; will retry", err)
			return
		}
	}
	b, err := events.EncodeBatch(d.Events)
	if err != nil {
		fail("cannot encode decision", err)
		return
	}
	// Fencing: no write without a lease that can still be trusted.
	if !c.owns(p.id) {
		c.stats.fenced.Add(1)
		fail("not appending: the partition's lease is lost or may have expired", nil)
		return
	}
	f, err := c.log.AppendAsync(it.sagaID, r.seq, b, events.ContentTypeBatch)
	if err != nil {
		fail("cannot append decision; will retry", err)
		return
	}
	r.busy = true
	p.appending++
	expected, timeout := r.seq, c.cfg.RequestTimeout
	// The answer comes back to the partition as an input. A stopping
	// partition waits for every append in flight (p.appending) to land
	// before its loop ends, so this send always finds a receiver.
	c.goFunc(func() {
		l.seq, l.err = streams.AppendResult(f, it.sagaID, expected, timeout)
		if marked != nil && l.err == nil {
			_, l.markErr = streams.AppendResult(marked, it.sagaID, 0, timeout)
		}
		p.inbox <- item{sagaID: it.sagaID, landed: l}
	})
}

// rejected handles an input the machine refused.
func (p *partition) rejected(r *run, it item, fresh bool, err error) {
	c := p.c
	switch {
	case !fresh && !it.refreshed:
		// The state in memory may be behind the log (another owner moved
		// the saga on while this one was paused, say): a reply to an
		// attempt it has not seen is news, not a stale echo. Read the log
		// once more before throwing an input away.
		p.logger(it).Debug("input rejected on the state in memory; reading the log again", "reason", err)
		it.refreshed = true
		p.evict(it.sagaID)
		p.requeue = append([]item{it}, p.requeue...)
	case !c.owns(p.id):
		p.retryLater(it) // the partition's owner decides
	default:
		// Logged and counted once, when the input is thrown away.
		reason := rejectStale
		switch {
		case errors.Is(err, machine.ErrIdempotencyConflict):
			// A client reused a key for another request, past the
			// duplicate window (client.Start refuses it within).
			reason = rejectIdempotencyConflict
			p.logger(it).Warn("input rejected", "reason", err)
		case errors.Is(err, machine.ErrRejected):
			p.logger(it).Info("input rejected", "reason", err)
		default:
			p.logger(it).Error("input refused", "error", err)
		}
		c.stats.rejected.Add(1)
		c.metrics.reject(reason)
		p.ack(it)
		p.next(r)
	}
}

// land finishes a decision whose append was in flight.
func (p *partition) land(l *landing) {
	c := p.c
	p.appending--
	r, it := l.run, l.it
	r.busy = false
	if l.err != nil {
		c.inflight.Add(-int64(l.reserved))
		p.evict(it.sagaID)
		switch {
		case !errors.Is(l.err, streams.ErrConflict):
			// The append may or may not have happened: the log, read
			// again, tells.
			p.logger(it).Error("cannot append decision; will retry", "error", l.err)
			p.retryLater(it)
		case !c.owns(p.id):
			p.logger(it).Info("lost a write race and no longer own the partition; leaving the input to the owner")
			p.retryLater(it)
		case it.attempt >= maxConflicts:
			p.logger(it).Warn("input lost the write race repeatedly; leaving it for redelivery")
			p.retryLater(it)
		default:
			c.stats.conflicts.Add(1)
			p.logger(it).Warn("lost a write race; deciding again from the log", "error", l.err)
			it.attempt++
			p.requeue = append([]item{it}, p.requeue...)
		}
		return
	}
	r.seq = l.seq
	r.msgs++
	if c.cfg.AfterAppend != nil {
		c.cfg.AfterAppend(it.sagaID, r.msgs)
	}
	if l.markErr != nil {
		ctx, cancel := c.opCtx()
		err := c.ix.MarkInFlight(ctx, p.id, it.sagaID)
		cancel()
		if err != nil {
			// The log exists but its marker may not: leave the start for
			// redelivery, which reads the log afresh and marks it.
			c.inflight.Add(-int64(l.reserved))
			p.logger(it).Error("cannot mark saga in flight; will retry", "error", errors.Join(l.markErr, err))
			p.evict(it.sagaID)
			p.retryLater(it)
			return
		}
	}
	p.apply(l)
}

// apply adopts a durable decision: the new state, its commands, the index,
// the input's ack; then the saga's next input.
func (p *partition) apply(l *landing) {
	c := p.c
	r, it, d := l.run, l.it, l.d
	r.state = d.State
	c.metrics.decided(r.state, d.Events, r.sent)
	c.tracer.decided(r, d.Events)
	c.inflight.Add(int64(d.State.InFlight()-l.before) - int64(l.reserved))
	if l.prev == machine.StatusNew && len(d.Events) > 0 {
		c.stats.started.Add(1)
	}
	p.execute(r, d.Commands)
	if d.Throttled {
		p.throttled[it.sagaID] = true
	} else {
		delete(p.throttled, it.sagaID)
	}
	if r.state.Status != l.prev || r.state.Paused != l.paused || it.what == "recover saga" {
		p.index(r)
	}
	p.ack(it)
	if r.state.Status.Finished() {
		c.stats.finished.Add(1)
		p.finished(it.sagaID, r.state.Finished)
		if c.logger.Enabled(context.Background(), slog.LevelInfo) {
			p.logger(it).Info("saga finished", "status", r.state.Status)
		}
		p.evict(it.sagaID)
	} else {
		p.next(r)
	}
	if d.State.InFlight() < l.before && c.cfg.MaxInFlight > 0 {
		c.wakeAll()
	}
}

// next puts the inputs that waited behind a saga's append back in line,
// ahead of inputs from inbox.
func (p *partition) next(r *run) {
	if r.busy || len(r.queue) == 0 {
		return
	}
	p.requeue = append(p.requeue, r.queue...)
	r.queue = nil
}

// load returns the saga from memory, or reads and folds its log. A start
// of a saga with no log gets an empty state.
func (p *partition) load(id string, start, assumeNew bool) (*run, error) {
	if r, ok := p.sagas[id]; ok {
		return r, nil
	}
	if assumeNew {
		return p.keep(id, &run{state: machine.New(id)}), nil
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
		if _, err := sagalog.Apply(s, e); err != nil {
			return nil, err
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
	p.c.timers.Add(-int64(len(r.timers)))
	if p.c.tracer != nil {
		p.c.tracer.drop(r)
	}
	if !r.state.Status.Finished() {
		p.c.inflight.Add(-int64(r.state.InFlight()))
	}
	delete(p.sagas, id)
	delete(p.throttled, id)
	p.loaded.Store(int64(len(p.sagas)))
	// Inputs that waited for the saga are handled afresh.
	p.requeue = append(p.requeue, r.queue...)
	r.queue = nil
}

// stopTimers forgets the partition's sagas when it stops: their timers,
// and their requests in the coordinator's in-flight count.
func (p *partition) stopTimers() {
	for _, r := range p.sagas {
		for _, t := range r.timers {
			t.Stop()
		}
		p.c.timers.Add(-int64(len(r.timers)))
		p.c.inflight.Add(-int64(r.state.InFlight()))
	}
}

// execute carries out a durable decision's commands. Requests and
// schedules are published without waiting; the acker awaits them, and if
// one fails the saga is recovered a little later, which sends every
// outstanding request and arms every timer again. (A crash before they
// are acknowledged is covered by recovery on restart.)
func (p *partition) execute(r *run, cmds []machine.Command) {
	c := p.c
	id := r.state.SagaID
	now := time.Now().UTC()
	failed := false
	for _, cmd := range cmds {
		var f jetstream.PubAckFuture
		var err error
		switch cmd := cmd.(type) {
		case machine.SendRequest:
			cmd.TraceParent = c.tracer.request(r, cmd, now)
			if cmd.NotBefore.After(now) {
				p.sendLater(r, cmd)
				continue
			}
			if c.metrics != nil {
				if r.sent == nil {
					r.sent = map[string]time.Time{}
				}
				r.sent[cmd.ID] = now
			}
			if f, err = p.sendRequest(id, cmd, now); err != nil {
				c.logger.Warn("cannot send request", "saga_id", id, "node", cmd.Request.Node, "error", err)
			}
		case machine.ArmTimer:
			if cmd.Timer.Kind == machine.TimerTimeout || time.Until(cmd.At) < scheduleAtLeast {
				p.armInMemory(r, cmd)
				continue
			}
			if f, err = p.schedule(id, cmd); err != nil {
				c.logger.Warn("cannot schedule timer", "saga_id", id, "timer", cmd.Timer.ID(), "error", err)
			}
		}
		if err != nil {
			failed = true
			continue
		}
		c.await(pending{f: f, failed: func(err error) {
			c.logger.Warn("publish failed; recovering the saga", "saga_id", id, "subject", f.Msg().Subject, "error", err)
			p.recoverLater(id)
		}})
	}
	if failed {
		p.recoverLater(id)
	}
}

// sendRequest publishes an action or undo request.
func (p *partition) sendRequest(sagaID string, cmd machine.SendRequest, now time.Time) (jetstream.PubAckFuture, error) {
	req := cmd.Request
	req.ReplyTo = streams.ReplySubject(p.id)
	b, err := events.Encode(events.Event{ID: cmd.ID, Source: p.c.source, SagaID: sagaID, Time: now,
		TraceParent: cmd.TraceParent, Data: &req})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(streams.RequestSubject(cmd.Action))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, cmd.ID)
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	return p.c.js.PublishMsgAsync(m, jetstream.WithStallWait(streams.StallWait))
}

// sendLater sends a request held back by an injected delay when its time
// comes. The delay is in the log (node.started's not_before), so recovery
// holds the request back again; a request lost here is sent by recovery.
func (p *partition) sendLater(r *run, cmd machine.SendRequest) {
	id := r.state.SagaID
	key := "send:" + cmd.ID
	if old, ok := r.timers[key]; ok {
		old.Stop()
	} else {
		p.c.timers.Add(1)
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
	} else {
		p.c.timers.Add(1)
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
	m.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(jetstream.ScheduleTargetHeader, streams.TimerFireSubject(p.id))
	m.Header.Set(jetstream.ScheduleTTLHeader, "1h") // fired timers expire
	return p.c.js.PublishMsgAsync(m, jetstream.WithStallWait(streams.StallWait))
}

// index writes the saga's summary. The index is derived from the log:
// a failure is logged, and recovery writes it again.
func (p *partition) index(r *run) {
	s := r.state
	if s.Created == nil {
		return
	}
	sum := index.Summary{ID: s.SagaID, Name: s.Created.Definition.Name, Status: string(s.Status), Paused: s.Paused, Partition: p.id,
		IdempotencyKey: s.Created.IdempotencyKey, Metadata: s.Created.Metadata, Created: s.CreatedAt, Updated: s.Updated}
	if s.Unwinding != nil {
		sum.Node = s.Unwinding.Node
	}
	warn := func(err error) { p.c.logger.Warn("cannot update saga index", "saga_id", s.SagaID, "error", err) }
	f, err := p.c.ix.PutAsync(sum)
	if err != nil {
		warn(err)
		return
	}
	p.c.await(pending{f: f, failed: warn})
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
		r, err := p.load(id, false, false)
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
