package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/streams"
)

// partition drives the sagas of one partition. All saga state is owned by
// one goroutine (loop), which only decides: every call that waits on the
// network (reading a log, appending, marking, publishing, listing) runs as
// an I/O operation elsewhere (run), and its result comes back as an input.
// One slow read holds up its own saga and nothing else.
type partition struct {
	c     *Coordinator
	env   env
	id    int
	epoch uint64 // the lease's revision when taken; 0 when pinned
	// post hands the partition an input from elsewhere (a consumer, a
	// timer): enqueue in production, the scheduler in the simulation.
	post func(input)

	inbox   chan input // new work: consumed messages, timers, queries
	results chan input // results of the partition's I/O
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}

	sagas map[string]*run // loaded, unfinished
	// loading are the sagas whose log is being read, with the inputs
	// waiting for it (the first one asked for the read).
	loading   map[string][]task
	throttled map[string]bool // held back by MaxInFlight
	loaded    atomic.Int64    // len(sagas), for Status
	consumers []jetstream.ConsumeContext
	direct    []*nats.Subscription // direct starts and signals (direct.go)
	// ops counts I/O operations in flight; past maxOps the partition takes
	// no new work until some come back.
	ops int
	// requeue holds inputs to handle before the next new one: those that
	// waited behind a saga's I/O, or whose saga was evicted.
	requeue []task
	// pass is the recovery pass under way, if any.
	pass *recoveryPass
	// stopping: the partition takes no new work; what it holds is left
	// for redelivery, and it waits for its I/O in flight.
	stopping bool
}

// maxOps bounds a partition's I/O in flight. Beyond it the partition
// stops taking messages (the consumers then stop pulling): a server that
// slows down slows the coordinator down rather than filling its memory.
const maxOps = 8192

// run is a saga loaded in memory.
type run struct {
	state *machine.State
	seq   uint64 // stream sequence of its last log message
	msgs  int    // messages in its log
	// raw are its log's messages as appended (or the one rollup of a
	// finished saga), restated by the rollup its last decision appends.
	raw    [][]byte
	timers map[string]stopper // in-memory timers, by timer id
	// indexed is the Updated time of the summary its marker holds (or
	// when it was loaded): a marker is refreshed when it falls
	// markerRefresh behind.
	indexed time.Time
	// busy: an append (or a marker write) is in flight; the saga's next
	// inputs wait in queue, so each decision builds on the durable one
	// before.
	busy  bool
	queue []task
	// sent is when each outstanding request went out, for the latency
	// metrics (nil without them).
	sent map[string]time.Time
	// spans are the open spans of outstanding requests (with tracing).
	spans map[string]trace.Span
}

// landing is a decision whose append is in flight, and how it ended.
type landing struct {
	run      *run
	t        task
	d        machine.Decision
	prev     machine.Status
	paused   bool
	before   int // requests in flight before the decision
	reserved int // places of Config.MaxInFlight held until the append answers
	// pending counts the answers still to come: the append's, and for a
	// new saga its in-flight marker's, written alongside.
	pending int
	// data is what the append writes; rollup: the saga's last decision,
	// restating its log.
	data    []byte
	rollup  bool
	seq     uint64
	err     error
	markErr error
}

// newPartition returns a partition of c with its seams; the caller runs
// its loop (production) or feeds handle (the simulation).
func newPartition(c *Coordinator, id int, epoch uint64, e env) *partition {
	p := &partition{c: c, env: e, id: id, epoch: epoch,
		inbox: make(chan input, 256), results: make(chan input, 1024), wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{}),
		sagas: map[string]*run{}, loading: map[string][]task{}, throttled: map[string]bool{}}
	p.post = p.enqueue
	return p
}

func (c *Coordinator) startPartition(ctx context.Context, id int, epoch uint64) (*partition, error) {
	work, err := c.js.CreateOrUpdateConsumer(ctx, c.ns.WorkStream(), c.ns.PartitionConsumer(id))
	if err != nil {
		return nil, fmt.Errorf("coordinator: partition %d consumer: %w", id, err)
	}
	timers, err := c.js.CreateOrUpdateConsumer(ctx, c.ns.TimerStream(), c.ns.TimerConsumer(id))
	if err != nil {
		return nil, fmt.Errorf("coordinator: partition %d timer consumer: %w", id, err)
	}
	p := newPartition(c, id, epoch, env{log: jsLog{c.log, c.js}, index: c.ix, defs: c.defs, pub: jsPublisher{c.js}, clock: wallClock{},
		owns: func() bool { return c.owns(id, epoch) }})
	p.env.io = func(op func(context.Context) input) {
		c.life.Go(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			in := op(ctx)
			cancel()
			p.results <- in // the partition reads results until every op is back
		})
	}
	// Recovery is the partition's first work, before any input.
	p.inbox <- recoverPassInput{}
	c.goFunc(p.loop)
	for _, cons := range []struct {
		cons  jetstream.Consumer
		input func(delivery) (sagaBound, *rejection)
	}{{work, func(m delivery) (sagaBound, *rejection) { return workInput(m, c.ns, id, c.cfg.Topology.Partitions) }}, {timers, firedInput}} {
		cc, err := cons.cons.Consume(func(m jetstream.Msg) {
			in, rej := cons.input(m)
			if rej != nil {
				p.reject(m, rej)
				return
			}
			p.enqueue(in)
		}, jetstream.PullMaxMessages(128),
			jetstream.PullHeartbeat(streams.PullHeartbeat), jetstream.PullExpiry(streams.PullExpiry),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				c.logger.Debug("consume", "partition", id, "error", err)
			}))
		if err != nil {
			p.stop(ctx)
			return nil, fmt.Errorf("coordinator: partition %d consume: %w", id, err)
		}
		p.consumers = append(p.consumers, cc)
	}
	for _, serve := range []func(*partition) (*nats.Subscription, error){c.serveDirectStarts, c.serveDirectSignals} {
		sub, err := serve(p)
		if err != nil {
			p.stop(ctx)
			return nil, fmt.Errorf("coordinator: partition %d direct starts and signals: %w", id, err)
		}
		p.direct = append(p.direct, sub)
	}
	return p, nil
}

// stop stops consuming and lets the goroutine finish what it has taken.
func (p *partition) stop(ctx context.Context) {
	for _, sub := range p.direct {
		_ = sub.Unsubscribe() // their clients fall back to commands
	}
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
// stopping (then a message is left for redelivery).
func (p *partition) enqueue(in input) {
	select {
	case p.inbox <- in:
	case <-p.quit:
		if b, ok := in.(sagaBound); ok && b.message() != nil {
			_ = b.message().Nak()
		}
	}
}

func (p *partition) loop() {
	defer close(p.done)
	defer p.stopTimers()
	recovery := time.NewTicker(p.c.cfg.RecoveryInterval)
	defer recovery.Stop()
	for !p.stopping {
		p.drain()
		inbox := p.inbox
		if p.ops >= maxOps {
			inbox = nil // results only, until there is room
		}
		select {
		case in := <-p.results:
			p.handle(in)
		case in := <-inbox:
			p.handle(in)
		case <-p.wake:
			p.handle(wakeInput{})
		case <-recovery.C:
			p.handle(recoverPassInput{})
		case <-p.quit:
			p.stopping = true
		}
	}
	// Stopping: new work is left for redelivery; the I/O in flight is
	// awaited, and the decisions that land are carried out.
	for {
		p.drain()
		if p.ops == 0 {
			break
		}
		select {
		case in := <-p.results:
			p.handle(in)
		case in := <-p.inbox:
			p.handle(in)
		}
	}
	for {
		select {
		case in := <-p.inbox:
			p.handle(in)
		default:
			return
		}
	}
}

// drain handles the inputs put back by evictions and landings.
func (p *partition) drain() {
	for len(p.requeue) > 0 {
		t := p.requeue[0]
		p.requeue[0] = task{}
		p.requeue = p.requeue[1:]
		p.step(t)
	}
	p.requeue = nil
}

// handle is the partition's one entry point: it decides one input.
func (p *partition) handle(in input) {
	switch in := in.(type) {
	case replyInput:
		p.step(task{in: in})
	case startInput:
		p.step(task{in: in})
	case operatorInput:
		p.step(task{in: in})
	case signalInput:
		p.step(task{in: in})
	case timerInput:
		p.step(task{in: in})
	case recoverInput:
		p.step(task{in: in})
	case advanceInput:
		p.step(task{in: in})
	case expireInput:
		p.step(task{in: in})
	case queryInput:
		p.step(task{in: in})
	case retryInput:
		p.step(in.t)
	case recoverPassInput:
		p.recover()
	case wakeInput:
		p.advanceThrottled()
	case sendDueInput:
		p.sendDue(in)
	case archiveAgainInput:
		p.archive(in.a)
	case archiveChecked:
		p.ops--
		p.searchedArchive(in)
	case loadDone:
		p.ops--
		p.loadedLog(in)
	case appendDone:
		p.ops--
		p.land(in)
	case markDone:
		p.ops--
		p.marked(in)
	case publishDone:
		p.ops--
		p.published(in)
	case indexDone:
		p.ops--
		if in.err != nil {
			p.c.logger.Warn("cannot update saga index", "saga_id", in.sum.ID, "error", in.err)
		}
	case finishDone:
		p.ops--
		p.archived(in)
	case listDone:
		p.ops--
		p.listed(in)
	case expireDone:
		p.ops--
		p.expired(in)
	default:
		// Every input type is listed above; one that is not is a bug,
		// reported, and never acted on.
		p.c.logger.Error("coordinator bug: an input of unknown type ignored", "partition", p.id, "type", fmt.Sprintf("%T", in))
	}
}

// run starts an I/O operation; its result comes back as an input.
func (p *partition) run(op func(ctx context.Context) input) {
	p.ops++
	p.env.io(op)
}

// after hands in to the partition after d.
func (p *partition) after(d time.Duration, in input) stopper {
	return p.env.clock.AfterFunc(d, func() { p.post(in) })
}

func (p *partition) reject(m delivery, r *rejection) {
	p.c.stats.rejected.Add(1)
	p.c.metrics.reject(r.kind)
	args := []any{"partition", p.id, "subject", m.Subject(), "reason", r.reason}
	if r.sagaID != "" {
		args = append(args, "saga_id", r.sagaID)
	}
	if r.err != nil {
		args = append(args, "error", r.err)
	}
	p.c.logger.Warn("input rejected", args...)
	if r2, ok := m.(refuser); ok {
		_ = r2.refuse(r.reason)
		return
	}
	_ = m.Term()
}

// maxConflicts is how often one input is decided again after losing a
// write race before it is left for redelivery.
const maxConflicts = 3

// logger is the coordinator's logger with the input's attributes.
func (p *partition) logger(t task) *slog.Logger {
	return p.c.logger.With("saga_id", t.in.saga(), "partition", p.id, "input", t.in.describe())
}

// step takes one input for a saga: it waits behind the saga's I/O in
// flight, or is decided on the saga in memory, or waits for its log to be
// read.
func (p *partition) step(t task) {
	id := t.in.saga()
	if p.stopping {
		p.leave(t)
		return
	}
	if r, ok := p.sagas[id]; ok && r.busy {
		r.queue = append(r.queue, t)
		return
	}
	if waiting, ok := p.loading[id]; ok {
		p.loading[id] = append(waiting, t)
		return
	}
	r := p.sagas[id]
	switch in := t.in.(type) {
	case queryInput:
		in.answer(r)
		return
	case expireInput:
		if r != nil {
			p.logger(t).Warn("expiry timer for a saga in flight ignored")
			p.ack(t)
			return
		}
	case startInput:
		if r == nil && t.attempt == 0 && !p.tooOld(t, in) {
			// A start is first decided as if the saga were new, without
			// a read: the append of its first message (expected position
			// 0) fails if the log exists, and the next attempt reads it.
			p.decide(p.keep(id, &run{state: p.c.graphs.New(id)}), t, true)
			return
		}
	}
	if r != nil {
		p.decide(r, t, false)
		return
	}
	p.loading[id] = []task{t}
	log, store := p.env.log, p.env.defs
	p.run(func(ctx context.Context) input {
		entries, err := log.Read(ctx, id, 0)
		if err != nil {
			return loadDone{id: id, err: err}
		}
		// Decoded here, with the definition read, so the partition
		// only applies.
		entries = sagalog.FromLastRollup(entries)
		msgs, err := sagalog.DecodeAll(ctx, store, id, entries)
		raw := make([][]byte, len(entries))
		for i, e := range entries {
			raw[i] = e.Data
		}
		return loadDone{id: id, msgs: msgs, raw: raw, err: err}
	})
}

// loadedLog goes on with the inputs that waited for a saga's log.
func (p *partition) loadedLog(in loadDone) {
	waiting := p.loading[in.id]
	delete(p.loading, in.id)
	fromPass := p.pass.loaded(in.id)
	defer p.pumpRecovery()
	if p.stopping {
		for _, t := range waiting {
			p.leave(t)
		}
		return
	}
	var r *run
	err := in.err
	if err == nil {
		r, err = fold(p.c.graphs, in.id, in.msgs, in.raw)
	}
	switch {
	case errors.Is(err, streams.ErrNotFound):
		if fromPass {
			// Marked, but the start has not reached the log yet: its
			// command is still to be handled.
			p.pass.Skipped++
		}
		p.absent(in.id, waiting)
		return
	case err != nil:
		if fromPass {
			p.c.stats.recoveryFailures.Add(1)
			p.pass.Failed++
			p.c.stats.failure(fmt.Sprintf("saga %s: %v", in.id, err))
		}
		for _, t := range waiting {
			p.logger(t).Error("cannot load saga; will retry", "error", err)
			if _, ok := t.in.(recoverInput); !ok {
				p.retryLater(t) // a recovery pass tries again on its own
			}
		}
		return
	}
	first := waiting[0]
	p.requeue = append(slices.Clone(waiting[1:]), p.requeue...)
	if r.state.Status.Finished() {
		switch first.in.(type) {
		case expireInput:
			p.expire(first, true)
		case recoverInput:
			if fromPass {
				p.c.stats.observedFinished.Add(1)
				p.pass.Finished++
			}
			// Finished, and still marked: its archiving or its marker's
			// removal may be missing.
			p.finished(r)
		default:
			// Rejected: the saga has finished. Its archiving may be
			// missing too (its owner died after the last append): done
			// again, harmlessly, now rather than at the next recovery
			// pass, which may come after the rollup expired.
			p.finished(r)
			p.decide(r, first, true)
		}
		return
	}
	p.keep(in.id, r)
	p.c.inflight.Add(int64(r.state.InFlight()))
	switch first.in.(type) {
	case expireInput:
		p.logger(first).Warn("expiry timer for a saga that has not finished ignored")
		p.ack(first)
	case recoverInput:
		if fromPass {
			p.c.stats.recovered.Add(1)
			p.pass.Recovered++
			p.c.stats.recoveredSaga(in.id)
		}
		p.decide(r, first, true)
	default:
		// Read afresh from the log, the saga may have decisions whose
		// commands never ran (an append whose answer was lost, a previous
		// owner's last decision): send its outstanding requests and arm
		// its timers again before anything else. Its marker may be
		// missing too (a start whose marker write failed after its first
		// append): write it again first.
		r.busy = true
		r.queue = append([]task{{in: recoverInput{id: in.id}}, first}, r.queue...)
		ix, id, sum := p.env.index, in.id, summaryOf(p.id, r.state)
		p.run(func(ctx context.Context) input { return markDone{id: id, err: ix.MarkInFlight(ctx, sum)} })
	}
}

// fold reads a saga's state from its log (msgs, decoded from raw).
func fold(graphs *machine.Graphs, id string, msgs []sagalog.Message, raw [][]byte) (*run, error) {
	s := graphs.New(id)
	for _, m := range msgs {
		if err := sagalog.Apply(s, m); err != nil {
			return nil, err
		}
	}
	r := &run{state: s, msgs: len(msgs), raw: raw}
	if n := len(msgs); n > 0 {
		r.seq = msgs[n-1].Seq
	}
	return r, nil
}

// absent handles the inputs for a saga that has no log.
func (p *partition) absent(id string, waiting []task) {
	for i, t := range waiting {
		switch in := t.in.(type) {
		case startInput:
			if p.tooOld(t, in) {
				// Its saga may have run, finished and left its log
				// subject since: creating it now would run it a second
				// time. The archive tells.
				p.searchArchive(t)
				continue
			}
			p.requeue = append(slices.Clone(waiting[i+1:]), p.requeue...)
			p.decide(p.keep(id, &run{state: p.c.graphs.New(id)}), t, true)
			return
		case expireInput:
			p.expire(t, false) // removed already; make sure the summary is gone too
		case recoverInput:
			// Nothing to recover: a start whose first append has not
			// landed yet, or a finished saga whose rollup left the log
			// after it was archived and before its marker went (the
			// owner died in between and none came back within the
			// dedupe window). The archive tells; its marker then goes.
			if in.listed != nil {
				p.unmarkArchived(*in.listed)
			}
		default:
			p.c.stats.rejected.Add(1)
			p.c.metrics.reject(rejectUnknownSaga)
			p.logger(t).Warn("input rejected", "reason", "no such saga")
			if rf, ok := t.in.message().(refuser); ok {
				// A direct signal's client learns why.
				_ = rf.refuse(fmt.Sprintf("no saga %s in flight: unknown, or finished and archived", id))
				continue
			}
			p.term(t)
		}
	}
}

// tooOld reports whether a start delivered before was sent longer ago
// than the dedupe window: a saga its earlier delivery started may have
// finished and left its log subject since, so it may create a saga only
// if the saga has a log (it is then decided as a duplicate) or the
// archive does not have it (searchArchive). A first delivery created
// nothing yet, however long it waited (coordinators down for a day, say).
func (p *partition) tooOld(t task, in startInput) bool {
	w := p.c.cfg.DedupeWindow
	return !t.notArchived && w >= 0 && in.redelivered && !in.sent.IsZero() && p.env.clock.Now().Sub(in.sent) > w
}

// searchArchive looks for the saga of an old start delivered again in
// the archive (tooOld).
func (p *partition) searchArchive(t task) {
	log, id := p.env.log, t.in.saga()
	p.run(func(ctx context.Context) input {
		_, err := log.Archived(ctx, id)
		if errors.Is(err, streams.ErrNotFound) {
			return archiveChecked{t: t}
		}
		return archiveChecked{t: t, found: err == nil, err: err}
	})
}

// searchedArchive goes on with an old start once the archive was searched:
// refused if the archive has its saga, or may have had it (the start is
// older than the retention); otherwise decided as any start.
func (p *partition) searchedArchive(in archiveChecked) {
	t := in.t
	start := t.in.(startInput)
	age := p.env.clock.Now().Sub(start.sent)
	ret := p.c.cfg.Retention
	var reason string
	switch {
	case in.err != nil:
		p.logger(t).Error("cannot search the archive for an old start's saga; will retry", "error", in.err)
		p.retryLater(t)
		return
	case in.found:
		reason = fmt.Sprintf("a start delivered again, sent %s ago, for a saga that finished and was archived", age.Round(time.Second))
	case ret >= 0 && age > ret:
		reason = fmt.Sprintf("a start delivered again, sent %s ago, longer than the retention (%s), for a saga with no log: it may be the redelivery of a saga that finished and was archived, and the archive let go of it",
			age.Round(time.Second), ret)
	default:
		t.notArchived = true
		p.step(t)
		return
	}
	p.c.stats.rejected.Add(1)
	p.c.metrics.reject(rejectStale)
	p.logger(t).Warn("input rejected", "reason", reason)
	p.term(t)
}

// marked goes on with a saga read afresh once its marker is written.
func (p *partition) marked(in markDone) {
	r, ok := p.sagas[in.id]
	if !ok {
		return
	}
	r.busy = false
	if in.err != nil {
		waiting := r.queue
		r.queue = nil
		p.evict(in.id)
		for _, t := range waiting {
			if _, ok := t.in.(recoverInput); ok {
				continue // comes again with the saga's next read
			}
			p.logger(t).Error("cannot mark saga in flight; will retry", "error", in.err)
			p.retryLater(t)
		}
		return
	}
	p.next(r)
}

// decide decides one input on a loaded saga. A decision with events is
// appended asynchronously: the saga waits (busy) until it lands, while the
// partition goes on with other sagas' inputs. fresh: the saga was just
// read from its log.
func (p *partition) decide(r *run, t task, fresh bool) {
	c := p.c
	in, ok := t.in.(sagaInput)
	if !ok {
		p.logger(t).Error("coordinator bug: an input the machine does not decide reached it")
		return
	}
	before := r.state.InFlight()
	// Admission: the decision may start as many nodes as there is room
	// for under Config.MaxInFlight (claimed here, so that partitions
	// deciding at the same time never overshoot it together), and gives
	// back what it did not use. What it did use stays reserved until its
	// append answers.
	room := c.claimRoom()
	opts := machine.Options{MaxInFlight: c.cfg.MaxInFlightPerSaga, Source: c.source, Epoch: p.epoch, Limited: c.cfg.MaxInFlight > 0, Room: room}
	d, err := machine.Decide(r.state, in.decision(p.env.clock.Now()), opts)
	if d.Throttled && d.Admitted == room {
		c.starved.Store(true) // held back for want of room: wake it when some is freed
	}
	c.release(room - d.Admitted)
	if err != nil {
		p.rejected(r, t, fresh, err)
		return
	}
	// Held back now, not once the append lands: room freed meanwhile
	// wakes the partition, and the wake must find the saga (its advance
	// then waits behind the append).
	if d.Throttled {
		p.throttled[in.saga()] = true
	} else {
		delete(p.throttled, in.saga())
	}
	l := &landing{run: r, t: t, d: d, prev: r.state.Status, paused: r.state.Paused, before: before, reserved: d.Admitted}
	if len(d.Events) == 0 {
		p.apply(l)
		return
	}
	fail := func(msg string, err error) {
		c.release(l.reserved)
		p.logger(t).Error(msg, "error", err)
		p.evict(in.saga())
		p.retryLater(t)
	}
	b, err := events.EncodeLog(in.saga(), d.State.TraceParent, d.Events)
	if err == nil && d.State.Status.Finished() {
		// The last decision restates the whole log: the stream keeps
		// only it, for the dedupe window, and the archive keeps it for
		// the retention.
		var rb []byte
		switch rb, err = events.EncodeRollup(append(slices.Clone(r.raw), b)); {
		case err != nil:
		case c.tooBig(rb):
			// One message cannot hold it: the saga stays on its log,
			// where readers find it, and is not archived (finished).
			p.logger(t).Warn("the finished saga's log is larger than a message may be; it stays on the log, unarchived, until purged",
				"bytes", len(rb))
		default:
			l.rollup, b = true, rb
		}
	}
	if err != nil {
		fail("cannot encode decision", err)
		return
	}
	l.data = b
	// Fencing: no write without a lease that can still be trusted.
	if !p.env.owns() {
		c.stats.fenced.Add(1)
		fail("not appending: the partition's lease is lost or may have expired", nil)
		return
	}
	r.busy = true
	l.pending = 1
	log, store, id, expected := p.env.log, p.env.defs, in.saga(), r.seq
	created, _ := d.Events[0].Data.(*events.SagaCreated)
	var rollup *streams.Rollup
	if l.rollup {
		rollup = &streams.Rollup{TTL: max(c.cfg.DedupeWindow, 0)}
	}
	p.run(func(ctx context.Context) input {
		if created != nil {
			// What the log will refer to is stored first (once per
			// definition: the store remembers).
			if err := store.Put(ctx, created); err != nil {
				return appendDone{l: l, err: err}
			}
		}
		seq, err := log.Append(ctx, id, expected, b, rollup)
		return appendDone{l: l, seq: seq, err: err}
	})
	if l.prev == machine.StatusNew {
		// The in-flight marker is written alongside the log's first
		// append, and the start is acknowledged only once both are
		// durable: until then the start comes again, and a saga read
		// afresh from its log is marked again (loadedLog), so recovery
		// never misses a saga in flight.
		l.pending++
		ix, sum := p.env.index, summaryOf(p.id, d.State)
		p.run(func(ctx context.Context) input {
			return appendDone{l: l, marker: true, err: ix.MarkInFlight(ctx, sum)}
		})
	}
}

// rejected handles an input the machine refused.
func (p *partition) rejected(r *run, t task, fresh bool, err error) {
	c := p.c
	switch {
	case !fresh && !t.refreshed:
		// The state in memory may be behind the log (another owner moved
		// the saga on while this one was paused, say): a reply to an
		// attempt it has not seen is news, not a stale echo. Read the log
		// once more before throwing an input away.
		p.logger(t).Debug("input rejected on the state in memory; reading the log again", "reason", err)
		t.refreshed = true
		p.evict(t.in.saga())
		p.requeue = append([]task{t}, p.requeue...)
	case !p.env.owns():
		p.retryLater(t) // the partition's owner decides
	default:
		// Logged and counted once, when the input is thrown away.
		reason := rejectStale
		switch {
		case errors.Is(err, machine.ErrIdempotencyConflict):
			// A client reused a key for another request, past the
			// duplicate window (client.Start refuses it within).
			reason = rejectIdempotencyConflict
			p.logger(t).Warn("input rejected", "reason", err)
		case errors.Is(err, machine.ErrDuplicateSignal):
			// Sent again (a client's retry): done already.
			reason = rejectDuplicate
			p.logger(t).Debug("signal taken already", "reason", err)
		case errors.Is(err, machine.ErrRejected):
			p.logger(t).Info("input rejected", "reason", err)
		default:
			p.logger(t).Error("input refused", "error", err)
		}
		c.stats.rejected.Add(1)
		c.metrics.reject(reason)
		_, signal := t.in.(signalInput)
		if rf, ok := t.in.message().(refuser); ok && (reason == rejectIdempotencyConflict || signal && reason != rejectDuplicate) {
			_ = rf.refuse(err.Error()) // a direct start's or signal's client learns why
		} else {
			p.ack(t)
		}
		if r.state.Status == machine.StatusNew {
			p.evict(t.in.saga()) // a start refused: nothing to keep
			return
		}
		p.next(r)
	}
}

// land takes the answers of a decision's append (and marker).
func (p *partition) land(in appendDone) {
	l := in.l
	if in.marker {
		l.markErr = in.err
	} else {
		l.seq, l.err = in.seq, in.err
	}
	if l.pending--; l.pending > 0 {
		return
	}
	c := p.c
	r, t := l.run, l.t
	id := t.in.saga()
	r.busy = false
	// The reservation ends with the answer: a failed decision gives it
	// back; apply turns it into what the decision really put in flight,
	// in one step (given back first, a partition deciding meanwhile
	// could take the places and overshoot the bound).
	if l.err != nil || l.markErr != nil {
		c.release(l.reserved)
		l.reserved = 0
	}
	if l.err != nil {
		p.evict(id)
		switch {
		case !errors.Is(l.err, streams.ErrConflict):
			// The append may or may not have happened: the log, read
			// again, tells.
			p.logger(t).Error("cannot append decision; will retry", "error", l.err)
			p.retryLater(t)
		case !p.env.owns():
			p.logger(t).Info("lost a write race and no longer own the partition; leaving the input to the owner")
			p.retryLater(t)
		case t.attempt >= maxConflicts:
			p.logger(t).Warn("input lost the write race repeatedly; leaving it for redelivery")
			p.retryLater(t)
		default:
			c.stats.conflicts.Add(1)
			p.logger(t).Warn("lost a write race; deciding again from the log", "error", l.err)
			t.attempt++
			p.requeue = append([]task{t}, p.requeue...)
		}
		return
	}
	r.seq = l.seq
	r.msgs++
	if l.rollup {
		r.raw = [][]byte{l.data}
	} else {
		r.raw = append(r.raw, l.data)
	}
	if c.cfg.AfterAppend != nil {
		c.cfg.AfterAppend(id, r.msgs)
	}
	if l.markErr != nil {
		// The log exists but its marker may not: leave the start for
		// redelivery, which reads the log afresh and marks it.
		p.logger(t).Error("cannot mark saga in flight; will retry", "error", l.markErr)
		p.evict(id)
		p.retryLater(t)
		return
	}
	p.apply(l)
}

// apply adopts a durable decision: the new state, its commands, the index,
// the input's ack; then the saga's next input.
func (p *partition) apply(l *landing) {
	c := p.c
	r, t, d := l.run, l.t, l.d
	id := t.in.saga()
	c.countStatus(r.state.Status, d.State.Status)
	r.state = d.State
	c.metrics.decided(r.state, d.Events, r.sent)
	c.tracer.decided(r, d.Events)
	// The decision's reservation becomes what it put in flight.
	if net := d.State.InFlight() - l.before - l.reserved; net > 0 {
		c.inflight.Add(int64(net))
	} else {
		c.release(-net)
	}
	l.reserved = 0
	if l.prev == machine.StatusNew && len(d.Events) > 0 {
		c.stats.started.Add(1)
	}
	p.execute(r, d.Commands)
	// A recovered saga's marker is written again unless it holds the
	// summary already: its owner may have died between an append and the
	// marker's update (a stuck saga listed as unwinding, say).
	rec, recovered := t.in.(recoverInput)
	if recovered && rec.listed != nil && sameSummary(*rec.listed, summaryOf(p.id, r.state)) {
		recovered = false
	}
	if r.indexed.IsZero() {
		r.indexed = r.state.Updated // the marker holds a summary about this fresh
	}
	// A status or pause change is written at once; otherwise the summary's
	// Updated follows progress, a write per saga per markerRefresh at
	// most (sagas that finish in milliseconds write none).
	stale := r.state.Updated.Sub(r.indexed) >= c.markerRefresh()
	if l.prev != machine.StatusNew && (r.state.Status != l.prev || r.state.Paused != l.paused || recovered || stale) {
		p.index(r) // a new saga's summary went with its marker
	}
	if cr, ok := t.in.message().(creator); ok && l.prev == machine.StatusNew && len(d.Events) > 0 {
		_ = cr.created() // a direct start's client learns it needs not compare
	} else {
		p.ack(t)
	}
	if r.state.Status.Finished() {
		c.stats.finished.Add(1)
		p.finished(r)
		if c.logger.Enabled(context.Background(), slog.LevelInfo) {
			p.logger(t).Info("saga finished", "status", r.state.Status)
		}
		p.evict(id)
	} else {
		p.next(r)
	}
}

// next puts the inputs that waited behind a saga's I/O back in line, ahead
// of new ones.
func (p *partition) next(r *run) {
	if r.busy || len(r.queue) == 0 {
		return
	}
	p.requeue = append(p.requeue, r.queue...)
	r.queue = nil
}

func (p *partition) keep(id string, r *run) *run {
	r.timers = map[string]stopper{}
	if old, ok := p.sagas[id]; ok {
		p.c.countStatus(old.state.Status, "")
	}
	p.c.countStatus("", r.state.Status)
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
		p.c.release(r.state.InFlight())
	}
	p.c.countStatus(r.state.Status, "")
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
		p.c.release(r.state.InFlight())
	}
}

func (p *partition) ack(t task) {
	if m := t.in.message(); m != nil {
		if err := m.Ack(); err != nil {
			p.c.logger.Debug("ack failed; the input will come again and be rejected as stale", "saga_id", t.in.saga(), "error", err)
		}
	}
}

func (p *partition) term(t task) {
	if m := t.in.message(); m != nil {
		_ = m.Term()
	}
}

// leave gives up an input when the partition stops: a message is
// redelivered (to whoever drives the partition next), an internal input
// is recreated by that owner's recovery.
func (p *partition) leave(t task) {
	if m := t.in.message(); m != nil {
		_ = m.Nak()
	}
}

// retryLater leaves an input for later: a message is redelivered after a
// delay; an internal input is handed in again after one.
func (p *partition) retryLater(t task) {
	if m := t.in.message(); m != nil {
		_ = m.NakWithDelay(time.Second)
		return
	}
	p.after(time.Second, retryInput{t: t})
}

// recoverLater recovers a saga (re-sends its requests, re-arms its timers)
// after a short delay.
func (p *partition) recoverLater(id string) {
	p.after(time.Second, recoverInput{id: id})
}

// advanceThrottled gives held-back sagas a chance to start nodes, in a
// fixed order.
func (p *partition) advanceThrottled() {
	if p.stopping {
		return
	}
	ids := make([]string, 0, len(p.throttled))
	for id := range p.throttled {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p.step(task{in: advanceInput{id: id}})
	}
}
