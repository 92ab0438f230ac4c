package coordinator

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/barrier"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/streams"
)

// This file is the simulation's world: one seeded scheduler with virtual
// time, and in-memory versions of everything a partition talks to — the
// saga logs, the index, the work and timer streams with their consumers,
// the request stream and the participants behind it, and the leases.
// Nothing in it starts a goroutine or reads a clock, so a seed replays
// exactly. sim_test.go drives it and checks the invariants.

// simEvent is something that happens at a virtual time.
type simEvent struct {
	at  time.Time
	seq uint64
	fn  func()
	// proc, if set, is the coordinator process the event runs in: dropped
	// if that process has crashed since (gen changed), deferred while it
	// is paused.
	proc *simCoord
	gen  int
	// cancelled, if set and true, drops the event (a stopped timer).
	cancelled *bool
}

type eventHeap []*simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*simEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// world is the simulated deployment.
type world struct {
	rng    *rand.Rand
	now    time.Time
	seq    uint64
	events eventHeap
	steps  int
	// faults: the fault phase is on (store calls fail, answers are lost,
	// messages are duplicated, processes crash and pause).
	faults bool
	// inOp is set while an I/O operation runs: the only time the in-memory
	// stores may be called. A call outside one is a network call on a
	// partition's goroutine.
	inOp   bool
	trace  io.Writer // nil: no trace
	logger *slog.Logger
	failed []string // invariant violations
	knobs  simKnobs
	// maxInFlight is the coordinators' Config.MaxInFlight (0: none).
	maxInFlight int

	partitions int
	logs       map[string][]streams.Entry
	lastSeq    uint64
	inflight   map[int]map[string]index.Summary
	// history is every message ever appended to a saga's log, the
	// messages a rollup restated included (for the checks).
	history map[string][]streams.Entry
	// archive holds finished sagas' rollups, and archivedSummaries their
	// summaries.
	archive           map[string][]byte
	archivedSummaries map[string][]byte
	work              []*simQueue // JETSAGA_WORK, per partition
	fired             []*simQueue // fired timers, per partition
	requests          *simQueue   // action and undo requests, to the participants
	msgIDs            map[string]bool
	schedules         map[string]*simSchedule
	leases            []simLease
	coords            []*simCoord
	sagas             []*simSaga
	effects           map[string]*simEffect          // by saga/node
	folds             map[string]*simFold            // by saga
	docs              map[string]*events.SagaCreated // stored definitions and defaults, by reference
	// expired are the sagas whose rollup left their log subject.
	expired map[string]bool
	// window is the coordinators' Config.DedupeWindow.
	window time.Duration
	// retries counts the operator's retries (for their command ids).
	retries int
}

// simKnobs change the world to show the simulation finds a class of bug:
// each is a bug that jetsaga once had or could have.
type simKnobs struct {
	// noFencing: a coordinator trusts its lease for ever (no fencing).
	noFencing bool
	// markerLost: in-flight markers are acknowledged but never stored.
	markerLost bool
}

func (w *world) tracef(format string, args ...any) {
	if w.trace != nil {
		fmt.Fprintf(w.trace, "%9.3fs  %s\n", w.now.Sub(simEpoch).Seconds(), fmt.Sprintf(format, args...))
	}
}

func (w *world) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.tracef("VIOLATION: %s", msg)
	w.failed = append(w.failed, msg)
}

// at schedules fn after d, in no process.
func (w *world) at(d time.Duration, fn func()) *simEvent {
	w.seq++
	e := &simEvent{at: w.now.Add(d), seq: w.seq, fn: fn}
	heap.Push(&w.events, e)
	return e
}

// in schedules fn after d in process sc's current incarnation.
func (w *world) in(sc *simCoord, d time.Duration, fn func()) {
	e := w.at(d, fn)
	e.proc, e.gen = sc, sc.gen
}

// step runs the next event; false when there is none.
func (w *world) step() bool {
	if w.events.Len() == 0 {
		return false
	}
	e := heap.Pop(&w.events).(*simEvent)
	w.now = e.at
	w.steps++
	switch {
	case e.cancelled != nil && *e.cancelled:
	case e.proc != nil && (e.proc.gen != e.gen || !e.proc.up):
		// The process crashed: what it was about to do never happens.
	case e.proc != nil && w.now.Before(e.proc.pausedUntil):
		w.seq++
		e.at, e.seq = e.proc.pausedUntil, w.seq
		heap.Push(&w.events, e)
	default:
		e.fn()
	}
	return true
}

// delay is a network or processing delay: mostly short, sometimes long,
// so that answers overtake each other.
func (w *world) delay() time.Duration {
	switch x := w.rng.IntN(100); {
	case x < 80:
		return time.Duration(w.rng.IntN(5)+1) * time.Millisecond
	case x < 97:
		return time.Duration(w.rng.IntN(200)+5) * time.Millisecond
	default:
		return time.Duration(w.rng.IntN(2000)+200) * time.Millisecond
	}
}

// chance is true with probability pct% during the fault phase.
func (w *world) chance(pct int) bool { return w.faults && w.rng.IntN(100) < pct }

// call is the fate of one store call: failed before it took effect, or
// took effect with its answer lost, or fine.
func (w *world) call(what string) (fail, lose bool) {
	if !w.inOp {
		w.violate("%s called on a partition's goroutine, not in an I/O operation", what)
	}
	switch {
	case w.chance(3):
		w.tracef("fault: %s fails", what)
		return true, false
	case w.chance(3):
		w.tracef("fault: %s happens, its answer is lost", what)
		return false, true
	}
	return false, false
}

var errSimFault = errors.New("sim: no answer (injected)")

// simLog is the saga logs in memory, with JetStream's semantics: an
// append at an expected last sequence, deduplicated by content.
type simLog struct{ w *world }

func (l simLog) Read(_ context.Context, id string, after uint64) ([]streams.Entry, error) {
	if fail, _ := l.w.call("read " + short(id)); fail {
		return nil, errSimFault
	}
	entries, ok := l.w.logs[id]
	if !ok {
		return nil, &streams.NotFoundError{SagaID: id}
	}
	var out []streams.Entry
	for _, e := range entries {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, nil
}

func (l simLog) Append(_ context.Context, id string, expected uint64, data []byte, rollup *streams.Rollup) (uint64, error) {
	w := l.w
	fail, lose := w.call("append " + short(id))
	if fail {
		return 0, errSimFault
	}
	entries := w.logs[id]
	var last uint64
	if n := len(entries); n > 0 {
		last = entries[n-1].Seq
	}
	if last != expected {
		// The same append again (its first answer lost) is a duplicate:
		// the stored message's sequence comes back.
		for _, e := range entries {
			if e.Seq > expected {
				if string(e.Data) == string(data) {
					return e.Seq, nil
				}
				break
			}
		}
		return 0, &streams.ConflictError{SagaID: id, Expected: expected}
	}
	w.lastSeq++
	e := streams.Entry{Seq: w.lastSeq, Data: slices.Clone(data), Time: w.now}
	if rollup == nil {
		w.logs[id] = append(entries, e)
		w.history[id] = append(w.history[id], e)
		w.tracef("log %s: seq %d stored", short(id), w.lastSeq)
	} else {
		w.rolledUp(id, e, rollup.TTL)
	}
	if lose {
		return 0, errSimFault
	}
	return w.lastSeq, nil
}

func (l simLog) Delete(_ context.Context, id string) error {
	w := l.w
	if fail, _ := w.call("delete " + short(id)); fail {
		return errSimFault
	}
	if _, ok := w.logs[id]; ok {
		if st, err := w.fold(id); err != nil || !st.Status.Finished() {
			w.violate("saga %s: its log was deleted before it finished", id)
		}
		w.expired[id] = true
		w.tracef("log %s: deleted", short(id))
	}
	delete(w.logs, id)
	return nil
}

// rolledUp stores rollup e as the saga's log, which it must restate
// exactly, and lets it expire after ttl (the dedupe window).
func (w *world) rolledUp(id string, e streams.Entry, ttl time.Duration) {
	parts, ok, err := events.SplitRollup(e.Data)
	h := w.history[id]
	switch {
	case err != nil || !ok:
		w.violate("saga %s: its last append is not a rollup: %v", id, err)
		return
	case len(parts) != len(h)+1:
		w.violate("saga %s: its rollup restates %d messages, its log has %d before it", id, len(parts), len(h))
		return
	}
	for i, m := range h {
		if string(parts[i]) != string(m.Data) {
			w.violate("saga %s: its rollup's message %d is not its log's", id, i)
			return
		}
	}
	w.logs[id] = []streams.Entry{e}
	w.history[id] = append(h, streams.Entry{Seq: e.Seq, Data: parts[len(h)], Time: e.Time})
	w.tracef("log %s: seq %d stored, a rollup", short(id), e.Seq)
	if ttl > 0 {
		w.at(ttl, func() {
			if l := w.logs[id]; len(l) == 1 && l[0].Seq == e.Seq {
				delete(w.logs, id)
				w.expired[id] = true
				w.tracef("log %s: the rollup expired", short(id))
			}
		})
	}
}

func (l simLog) Archive(_ context.Context, id string, rollup, summary []byte) error {
	w := l.w
	return simIndex(l).write("archive "+short(id), func() {
		if had, ok := w.archive[id]; ok && string(had) != string(rollup) {
			w.violate("saga %s: archived twice, differently", id)
		}
		if _, ok := w.archive[id]; !ok {
			w.archive[id] = slices.Clone(rollup)
			w.archivedSummaries[id] = slices.Clone(summary)
		}
	})
}

func (l simLog) Archived(_ context.Context, id string) (*streams.Entry, error) {
	if fail, _ := l.w.call("read the archive for " + short(id)); fail {
		return nil, errSimFault
	}
	b, ok := l.w.archive[id]
	if !ok {
		return nil, &streams.NotFoundError{SagaID: id}
	}
	return &streams.Entry{Data: b, Summary: l.w.archivedSummaries[id]}, nil
}

// marked reports whether saga id has an in-flight marker.
func (w *world) marked(id string) bool {
	_, ok := w.inflight[w.partitionOf(id)][id]
	return ok
}

// simIndex is the saga index in memory.
// simDefs is the definitions bucket: every call may fail or lose its
// answer, like the other stores.
type simDefs struct{ w *world }

func (d simDefs) Put(_ context.Context, c *events.SagaCreated) error {
	if c.Definition == nil || c.Defaults == nil {
		return fmt.Errorf("sim: put %s without the documents", c.DefinitionRef)
	}
	if _, known := d.w.docs[c.DefinitionRef]; known {
		return nil // the store's cache: no call
	}
	return simIndex(d).write("put definition", func() {
		d.w.docs[c.DefinitionRef] = &events.SagaCreated{Definition: c.Definition}
		d.w.docs[c.DefaultsRef] = &events.SagaCreated{Defaults: c.Defaults}
	})
}

func (d simDefs) Resolve(_ context.Context, c *events.SagaCreated) error {
	if fail, _ := d.w.call("read definition"); fail {
		return errSimFault
	}
	return d.w.resolve(c)
}

// resolve fills c from the stored documents, without faults.
func (w *world) resolve(c *events.SagaCreated) error {
	def, dfl := w.docs[c.DefinitionRef], w.docs[c.DefaultsRef]
	if def == nil || dfl == nil {
		return fmt.Errorf("sim: definition %s or defaults %s not stored", c.DefinitionRef, c.DefaultsRef)
	}
	c.Definition, c.Defaults = def.Definition, dfl.Defaults
	return nil
}

type simIndex struct{ w *world }

func (x simIndex) write(what string, f func()) error {
	fail, lose := x.w.call(what)
	if fail {
		return errSimFault
	}
	f()
	if lose {
		return errSimFault
	}
	return nil
}

func (x simIndex) MarkInFlight(_ context.Context, s index.Summary) error {
	if s.Partition != x.w.partitionOf(s.ID) {
		x.w.violate("saga %s marked in partition %d, belongs to %d", s.ID, s.Partition, x.w.partitionOf(s.ID))
	}
	return x.write("mark "+short(s.ID), func() {
		if !x.w.knobs.markerLost {
			x.w.inflight[s.Partition][s.ID] = s
		}
	})
}

func (x simIndex) ClearInFlight(_ context.Context, p int, id string) error {
	return x.write("clear "+short(id), func() { delete(x.w.inflight[p], id) })
}

func (x simIndex) InFlight(_ context.Context, p int) ([]index.Summary, error) {
	if fail, _ := x.w.call("list in flight"); fail {
		return nil, errSimFault
	}
	sums := make([]index.Summary, 0, len(x.w.inflight[p]))
	for _, s := range x.w.inflight[p] {
		sums = append(sums, s)
	}
	sort.Slice(sums, func(i, j int) bool { return sums[i].ID < sums[j].ID })
	return sums, nil
}

func (x simIndex) Forget(_ context.Context, id string) error {
	return x.write("forget "+short(id), func() {})
}

// simPub stores requests and timer schedules.
type simPub struct{ w *world }

func (pub simPub) Publish(_ context.Context, m *nats.Msg) error {
	w := pub.w
	fail, lose := w.call("publish " + m.Subject)
	if fail {
		return errSimFault
	}
	switch {
	case strings.HasPrefix(m.Subject, streams.RequestSubject("")):
		id := m.Header.Get(jetstream.MsgIDHeader)
		if !w.msgIDs[id] { // the stream's deduplication
			w.msgIDs[id] = true
			w.requests.add(m.Subject, m.Data, 0)
		}
	case strings.HasPrefix(m.Subject, "jetsaga.timer.sched."):
		w.schedule(m)
	default:
		w.violate("publish to an unexpected subject %s", m.Subject)
	}
	if lose {
		return errSimFault
	}
	return nil
}

// simSchedule is a message schedule: it fires once, at its time, unless
// replaced.
type simSchedule struct {
	version int
}

func (w *world) schedule(m *nats.Msg) {
	at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(m.Header.Get(jetstream.ScheduleHeader), "@at "))
	if err != nil {
		w.violate("schedule with a bad time: %v", err)
		return
	}
	var tm timerMsg
	if err := json.Unmarshal(m.Data, &tm); err != nil {
		w.violate("schedule with a bad body: %v", err)
		return
	}
	s := w.schedules[m.Subject]
	if s == nil {
		s = &simSchedule{}
		w.schedules[m.Subject] = s
	}
	s.version++
	version, data, p := s.version, slices.Clone(m.Data), w.partitionOf(tm.SagaID)
	w.at(max(at.Sub(w.now), 0)+time.Duration(w.rng.IntN(500))*time.Millisecond, func() {
		if s.version == version {
			w.fired[p].add(streams.TimerFireSubject(p), data, 0)
		}
	})
}

func (w *world) partitionOf(id string) int { return streams.Partition(id, w.partitions) }

// simClock is virtual time.
type simClock struct{ w *world }

func (c simClock) Now() time.Time { return c.w.now }

func (c simClock) AfterFunc(d time.Duration, f func()) stopper {
	e := c.w.at(max(d, 0), f)
	cancelled := false
	e.cancelled = &cancelled
	return simTimer{&cancelled}
}

type simTimer struct{ cancelled *bool }

func (t simTimer) Stop() bool {
	was := !*t.cancelled
	*t.cancelled = true
	return was
}

// simQueue is a stream with one durable consumer: at-least-once delivery,
// redelivery after the ack wait, naks, and (in the fault phase)
// duplicates and lost acks.
type simQueue struct {
	w    *world
	name string
	// consumer hands a delivery to whoever consumes now; false if nobody
	// does (it is tried again a little later).
	consumer func(d *simDelivery) bool
	ackWait  time.Duration
	nextID   int
}

type simMsg struct {
	q        *simQueue
	id       int
	subject  string
	data     []byte
	done     bool
	delivery int // deliveries so far
}

func (q *simQueue) add(subject string, data []byte, d time.Duration) {
	q.nextID++
	m := &simMsg{q: q, id: q.nextID, subject: subject, data: data}
	q.w.tracef("%s: +%d %s", q.name, m.id, subject)
	q.available(m, d)
}

// available makes m deliverable after d.
func (q *simQueue) available(m *simMsg, d time.Duration) {
	q.w.at(d, func() { q.deliver(m) })
}

func (q *simQueue) deliver(m *simMsg) {
	w := q.w
	if m.done {
		return
	}
	m.delivery++
	n := m.delivery
	if !q.consumer(&simDelivery{m: m, n: n}) {
		m.delivery--
		q.available(m, 200*time.Millisecond)
		return
	}
	// Not acknowledged within the ack wait: delivered again.
	w.at(q.ackWait, func() {
		if !m.done && m.delivery == n {
			w.tracef("%s: %d not acked in time; redelivered", q.name, m.id)
			q.deliver(m)
		}
	})
	if w.chance(2) {
		w.tracef("fault: %s delivers %d twice", q.name, m.id)
		q.available(m, w.delay())
	}
}

// simDelivery is one delivery of a message; it settles the message.
type simDelivery struct {
	m *simMsg
	n int
}

func (d *simDelivery) Subject() string { return d.m.subject }
func (d *simDelivery) Data() []byte    { return d.m.data }

func (d *simDelivery) Ack() error {
	w := d.m.q.w
	if w.chance(2) {
		w.tracef("fault: ack of %s %d lost", d.m.q.name, d.m.id)
		return nil
	}
	d.m.done = true
	return nil
}

func (d *simDelivery) Nak() error { return d.NakWithDelay(0) }

// Metadata tells how many times the message was delivered, as
// JetStream's does.
func (d *simDelivery) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: uint64(d.n)}, nil
}

func (d *simDelivery) NakWithDelay(delay time.Duration) error {
	if !d.m.done && d.m.delivery == d.n {
		d.m.delivery++ // this delivery is over
		d.m.q.available(d.m, delay)
	}
	return nil
}

func (d *simDelivery) Term() error {
	d.m.done = true
	return nil
}

// simSaga is a saga the simulation starts, with its plan.
type simSaga struct {
	id    string
	nodes []string
	// fail is the node whose action fails for good ("" for none): the
	// saga must unwind. flaky nodes fail once, transiently.
	fail  string
	flaky map[string]bool
	// await is the saga's await node ("" for none); a client signals it.
	await string
}

// simEffect is what the participants did for one node of one saga (the
// handlers' effects), and the node's barrier record.
type simEffect struct {
	applied, undone int
	rec             *barrier.Record
	flaked          bool
}

// participate is the participants: they take a request, apply its effect
// behind the barrier, and reply.
func (w *world) participate(d *simDelivery) {
	ev, err := events.Decode(d.Data())
	if err != nil {
		w.violate("a request participants cannot decode: %v", err)
		_ = d.Term()
		return
	}
	req, ok := ev.Data.(*events.ActionRequest)
	if !ok {
		w.violate("a %s on the request stream", ev.Type())
		_ = d.Term()
		return
	}
	var plan *simSaga
	for _, s := range w.sagas {
		if s.id == ev.SagaID {
			plan = s
		}
	}
	if plan == nil {
		w.violate("a request for a saga nobody started: %s", ev.SagaID)
		_ = d.Term()
		return
	}
	key := ev.SagaID + "/" + req.Node
	// An await's undo is an undo-only action: the SDK keeps it behind the
	// barrier as an action, under a key of its own (participant.handle).
	op, awaitUndo := req.Op, req.Node == plan.await && req.Op == events.OpUndo
	if awaitUndo {
		op = events.OpDo
	}
	e := w.effects[key]
	if e == nil {
		e = &simEffect{}
		w.effects[key] = e
	}
	reply := events.ActionReply{RequestID: ev.ID, Op: req.Op, Node: req.Node, Attempt: req.Attempt}
	fail := func(kind events.ErrorKind, msg string) { reply.Error = &events.Error{Kind: kind, Message: msg} }
	// The participant SDK's barrier, on a record in memory: the same rules
	// (internal/barrier), with a run that settles at once.
	switch barrier.Decide(op, req.Attempt, e.rec, w.now) {
	case barrier.VerdictReplyOutput:
		reply.OK, reply.Output = true, e.rec.Output
	case barrier.VerdictReplyError:
		reply.Error = e.rec.Error
	case barrier.VerdictRefuse:
		fail(events.ErrorPermanent, "action arrived after its undo")
	case barrier.VerdictUndone:
		reply.OK = true
	case barrier.VerdictTombstone:
		e.rec = &barrier.Record{State: barrier.StateTombstone, RequestID: ev.ID, Updated: w.now}
		reply.OK = true
	case barrier.VerdictRun:
		if !req.Deadline.IsZero() && !w.now.Before(req.Deadline) {
			fail(events.ErrorTransient, "deadline passed before the handler started") // not run, not recorded
			break
		}
		held := barrier.Acquired(op, req.Attempt, e.rec, "sim", ev.ID, w.now.Add(time.Minute), w.now)
		kind, output := barrier.OutcomeOK, json.RawMessage(nil)
		switch {
		case req.Op == events.OpUndo:
			e.undone++
		case req.Node == plan.await:
			w.violate("a do request for await node %s", req.Node)
		case plan.fail == req.Node && (plan.await == "" || req.Attempt == 1):
			// (In an approval the failure is fixed for the operator's
			// retry.)
			kind = barrier.OutcomePermanent
			fail(events.ErrorPermanent, "planned failure")
		case plan.flaky[req.Node] && !e.flaked:
			e.flaked, kind = true, barrier.OutcomeRetry
			fail(events.ErrorTransient, "planned hiccup")
		default:
			e.applied++
			output = json.RawMessage(`"ok"`)
		}
		e.rec = barrier.Settled(op, e.rec, held, kind, output, reply.Error, ev.ID, w.now)
		if kind == barrier.OutcomeOK {
			reply.OK = true
			if req.Op == events.OpDo {
				reply.Output = output
			}
		}
	default:
		w.violate("the barrier cannot decide on %+v", e.rec)
		return
	}
	w.tracef("participant: %s %s %s #%d → ok=%v", short(ev.SagaID), req.Node, req.Op, req.Attempt, reply.OK)
	b, err := events.Encode(events.Event{ID: events.ReplyID(ev.ID), Source: "sim/participant", SagaID: ev.SagaID, Time: w.now, Data: &reply})
	if err != nil {
		w.violate("encode reply: %v", err)
		return
	}
	if w.chance(3) {
		w.tracef("fault: reply to %s lost; request redelivered", short(ev.SagaID))
		_ = d.NakWithDelay(500 * time.Millisecond)
		return
	}
	if id := events.ReplyID(ev.ID); !w.msgIDs[id] { // the stream's deduplication
		w.msgIDs[id] = true
		p := w.partitionOf(ev.SagaID)
		w.work[p].add(streams.ReplySubject(p), b, w.delay())
	}
	_ = d.Ack()
}

// short is a saga id's first part, for traces.
func short(id string) string {
	if i := strings.IndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}

// sagaID makes a saga id from the world's random numbers.
func (w *world) sagaID() string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d", w.rng.Uint64())
	a, b := h.Sum64(), w.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(a>>32), uint16(a>>16), uint16(a)&0xfff, uint16(b>>48)&0xfff, b&0xffffffffffff)
}
