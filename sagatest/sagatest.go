// Package sagatest checks that the nodes of a saga are correct: that
// actions are idempotent and atomic, and that undos restore what the
// actions changed and tolerate running twice. The engine can only unwind a
// saga as well as its nodes let it (RFD 419, "Only YOU can prevent
// unwinding sagas"); these checks find the nodes that would not let it.
//
//	func TestBookTrip(t *testing.T) {
//		k := sagatest.New(t)
//		k.Register("flights.book", bookFlight, cancelFlight)
//		k.Register("hotels.book", bookHotel, cancelHotel)
//		k.ActionFailureCanUnwind(tripSaga, func() any { return Trip{Who: "ada"} }, sagatest.Hooks{
//			Before: func(t testing.TB) any { return db.Bookings(t) },
//		})
//	}
//
// New starts everything a check needs in the test's process: a NATS
// server with JetStream (in a temporary directory), a coordinator, and a
// participant for the handlers the test registers. The checks start real
// sagas and steer them with the engine's fault injection (events.Fault):
// a fault is recorded in the saga's log like any other event, so what a
// check did can be replayed (the failure message names the saga).
//
// Each check takes the saga's definition, a params factory, and Hooks that
// capture the state of the system the saga acts on before and after each
// run; the check compares the captures (reflect.DeepEqual) and reports what
// differs, which node and which check. Captures should leave out what
// differs between runs by design: saga ids, idempotency keys, generated ids.
//
// The participant's idempotency barrier is off by default, so a check
// exercises the handlers themselves: the barrier replays a completed run's
// output, but a participant that crashes in the middle of an action, or
// whose record expires, runs the action again, and only an idempotent
// action is safe then. WithBarrier turns it on.
//
// sagatest imports package testing: import it from tests only.
package sagatest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// Hooks capture the state of the system a saga acts on (rows of a test
// database, records of a fake service). Before is called before each saga
// a check starts, After once it has ended; the check compares what they
// return. Before may also reset the system: ActionsSucceedIdempotently and
// CrashAtEveryEvent compare separate runs, which needs each to start from
// the same state. A nil After means Before captures both; with both nil,
// checks compare outcomes only.
type Hooks struct {
	Before func(t testing.TB) any
	After  func(t testing.TB) any
}

func (h Hooks) before(t testing.TB) any {
	if h.Before == nil {
		return nil
	}
	return h.Before(t)
}

func (h Hooks) after(t testing.TB) any {
	switch {
	case h.After != nil:
		return h.After(t)
	case h.Before != nil:
		return h.Before(t)
	}
	return nil
}

// Option configures a Kit.
type Option func(*options)

type options struct {
	timeout time.Duration
	barrier bool
	logger  *slog.Logger
}

// WithTimeout bounds how long one saga of a check may take before the
// check reports it as hanging. Default: 30s.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithBarrier keeps the participant's idempotency barrier on (see the
// package documentation for why it is off by default).
func WithBarrier() Option { return func(o *options) { o.barrier = true } }

// WithLogger sends the coordinator's and participant's logs to logger.
// Default: discarded.
func WithLogger(logger *slog.Logger) Option { return func(o *options) { o.logger = logger } }

// Kit runs sagas against an in-process NATS server, coordinator and
// participant. Its methods must be called from the test's goroutine.
type Kit struct {
	t    testing.TB
	opts options
	url  string
	js   jetstream.JetStream
	cl   *client.Client
	part *participant.Participant

	started bool // the participant
	coord   *coordinator.Coordinator
	coordNC *nats.Conn
	incarns int
	crash   atomic.Pointer[crashPoint]

	mu    sync.Mutex
	sagas []string // every saga the kit started, in order
	// signals are sent to every saga the kit's checks start (Signals).
	signals map[string]any
}

// partitions is small: a kit's coordinator drives them all.
const partitions = 2

// New starts a NATS server, a coordinator and a participant (which starts
// serving at the first saga, so register every action first). Everything
// is stopped by t.Cleanup.
func New(t testing.TB, opts ...Option) *Kit {
	t.Helper()
	k := &Kit{t: t, opts: options{timeout: 30 * time.Second, logger: slog.New(slog.DiscardHandler)}}
	for _, o := range opts {
		o(&k.opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir(), Port: -1, ServerName: "sagatest"})
	if err != nil {
		t.Fatalf("sagatest: start NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	k.url = srv.ClientURL()
	nc := k.connect("sagatest client")
	t.Cleanup(nc.Close)
	k.js, _ = jetstream.New(nc)
	k.startCoordinator(ctx)
	t.Cleanup(func() { k.stopCoordinator() })
	if k.cl, err = client.New(ctx, k.js, client.WithOperator("sagatest")); err != nil {
		t.Fatalf("sagatest: client: %v", err)
	}
	pnc := k.connect("sagatest participant")
	pjs, _ := jetstream.New(pnc)
	k.part, err = participant.New(pjs, participant.Config{Name: "sagatest", Logger: k.opts.logger, DisableBarrier: !k.opts.barrier})
	if err != nil {
		t.Fatalf("sagatest: participant: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = k.part.Stop(ctx)
		pnc.Close()
	})
	return k
}

func (k *Kit) connect(name string) *nats.Conn {
	k.t.Helper()
	nc, err := nats.Connect(k.url, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		k.t.Fatalf("sagatest: connect to NATS: %v", err)
	}
	return nc
}

// crashPoint is where CrashAtEveryEvent stops the coordinator: once the
// saga's log holds at messages.
type crashPoint struct {
	saga    string
	at      int
	crashed chan struct{}
}

func (k *Kit) startCoordinator(ctx context.Context) {
	k.t.Helper()
	k.incarns++
	nc := k.connect(fmt.Sprintf("sagatest coordinator %d", k.incarns))
	js, _ := jetstream.New(nc)
	c, err := coordinator.New(js, coordinator.Config{
		Name:       fmt.Sprintf("sagatest-%d", k.incarns),
		Logger:     k.opts.logger,
		Topology:   streams.Config{Partitions: partitions},
		Partitions: []int{0, 1},
		AfterAppend: func(sagaID string, messages int) {
			cp := k.crash.Load()
			if cp == nil || cp.saga != sagaID || cp.at != messages || !k.crash.CompareAndSwap(cp, nil) {
				return
			}
			// The decision is durable; its requests and timers are not
			// out. Dying here is the harshest place to die.
			nc.Close()
			close(cp.crashed)
		},
	})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		nc.Close()
		k.t.Fatalf("sagatest: start coordinator: %v", err)
	}
	k.coord, k.coordNC = c, nc
}

func (k *Kit) stopCoordinator() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = k.coord.Stop(ctx)
	k.coordNC.Close()
}

// restartCoordinator replaces a coordinator that died with a new one, as
// a supervisor would; the new one recovers the sagas in flight from their
// logs.
func (k *Kit) restartCoordinator() {
	k.t.Helper()
	k.stopCoordinator()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k.startCoordinator(ctx)
}

// Register adds an action's handlers to the kit's participant, like
// participant.Participant.Register. Register every action before running
// sagas.
func (k *Kit) Register(action string, do, undo participant.Handler) {
	k.t.Helper()
	if err := k.part.Register(action, do, undo); err != nil {
		k.t.Fatalf("sagatest: register %s: %v (register every action before the first saga)", action, err)
	}
}

// Participant is the kit's participant, for code that registers its
// actions on a *participant.Participant. It starts at the first saga.
func (k *Kit) Participant() *participant.Participant { return k.part }

// JetStream is a JetStream context on the kit's server.
func (k *Kit) JetStream() jetstream.JetStream { return k.js }

// URL is the kit's NATS server URL.
func (k *Kit) URL() string { return k.url }

// Client is a client of the kit's coordinator.
func (k *Kit) Client() *client.Client { return k.cl }

func (k *Kit) startParticipant() {
	k.t.Helper()
	if k.started {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.part.Start(ctx); err != nil {
		k.t.Fatalf("sagatest: start participant: %v", err)
	}
	k.started = true
}

// Run starts a saga with params and the given faults, waits until it has
// ended or is stuck, and returns its status. A saga that does not end
// within the kit's timeout fails the test.
func (k *Kit) Run(def *saga.Definition, params any, faults ...events.Fault) *client.Saga {
	k.t.Helper()
	s, err := k.run(def, params, faults, nil)
	if err != nil {
		k.t.Fatalf("sagatest: %v", err)
	}
	return s
}

// run runs one saga; with crash set, the coordinator dies once the log
// holds crash.at messages and another takes over.
func (k *Kit) run(def *saga.Definition, params any, faults []events.Fault, crash *crashPoint) (*client.Saga, error) {
	k.t.Helper()
	k.startParticipant()
	ctx, cancel := context.WithTimeout(context.Background(), k.opts.timeout)
	defer cancel()
	id := uuid.NewString()
	if crash != nil {
		crash.saga, crash.crashed = id, make(chan struct{})
		k.crash.Store(crash)
		defer k.crash.Store(nil)
	}
	opts := []client.StartOption{client.WithSagaID(id)}
	if len(faults) > 0 {
		opts = append(opts, client.WithFaults(faults...))
	}
	if _, err := k.cl.Start(ctx, def, params, opts...); err != nil {
		return nil, fmt.Errorf("start saga %s: %w", def.Name, err)
	}
	k.mu.Lock()
	k.sagas = append(k.sagas, id)
	k.mu.Unlock()
	if err := k.sendSignals(ctx, id, def); err != nil {
		return nil, err
	}
	type result struct {
		s   *client.Saga
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := k.cl.Wait(ctx, id)
		done <- result{s, err}
	}()
	var r result
	if crash != nil {
		select {
		case <-crash.crashed:
			k.restartCoordinator()
			r = <-done
		case r = <-done:
			// Ended first. If the log reached the crash point, the
			// coordinator died there (or is about to): replace it.
			if r.err == nil && messages(r.s) >= crash.at {
				select {
				case <-crash.crashed:
				case <-time.After(k.opts.timeout):
					return nil, fmt.Errorf("saga %s: the coordinator did not stop at log message %d", id, crash.at)
				}
				k.restartCoordinator()
			}
		}
	} else {
		r = <-done
	}
	if r.err != nil {
		s, _ := k.cl.Status(context.Background(), id)
		return nil, fmt.Errorf("saga %s (%s) did not end within %s: %v%s", id, def.Name, k.opts.timeout, r.err, where(s))
	}
	return r.s, nil
}

// messages counts the log messages of a saga's timeline.
func messages(s *client.Saga) int {
	var ns []int
	for _, e := range s.Timeline {
		ns = append(ns, e.Message)
	}
	return len(slices.Compact(ns))
}

// where says where an unfinished saga is.
func where(s *client.Saga) string {
	if s == nil {
		return ""
	}
	var parts []string
	for _, n := range s.Nodes {
		if n.State != "pending" {
			parts = append(parts, n.Path+" "+n.State)
		}
	}
	return fmt.Sprintf(" (saga %s; nodes: %s)", s.Status, strings.Join(parts, ", "))
}

// Sagas lists the ids of the sagas the kit has started, in order.
func (k *Kit) Sagas() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.sagas)
}
