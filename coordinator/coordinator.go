package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/lease"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/startstop"
	"github.com/jetsaga/jetsaga/streams"
)

// asyncWindow bounds the coordinator's unacknowledged asynchronous writes.
const asyncWindow = 16384

// MinServerVersion is the oldest nats-server jetsaga runs on: message
// schedules, which durable retry timers use, came in 2.12.
const MinServerVersion = "2.12.0"

// Coordinator drives the sagas of its partitions. Create it with New.
type Coordinator struct {
	cfg Config
	// adopt: Topology.Partitions was not given; Start adopts the
	// deployed topology's.
	adopt  bool
	js     jetstream.JetStream
	nc     *nats.Conn
	logger *slog.Logger
	source string

	log  *streams.Log
	ix   *index.Index
	defs *defs.Store
	// graphs shares compiled definitions between the sagas in memory.
	graphs *machine.Graphs
	leases *lease.Keeper // nil when Config.Partitions pins the partitions
	// leaseNC is the leases' own connection (nil when pinned);
	// leaseDenied, the last permission violation it was told of.
	leaseNC     *nats.Conn
	leaseDenied atomic.Pointer[error]

	// life runs Start and Stop, owns every goroutine the coordinator
	// starts, and gives them a context that Stop cancels after draining.
	life startstop.Lifecycle

	mu    sync.Mutex // guards parts, starting, svc
	parts map[int]*partition
	// starting are the partitions leased and being started (drive), with
	// their lease's epoch.
	starting map[int]uint64
	ns       streams.Namespace // the deployment's, from cfg.Topology
	svc      micro.Service     // the micro service: status, saga-state and drain requests

	// inflight counts requests awaiting replies or retries across sagas,
	// for Config.MaxInFlight.
	inflight atomic.Int64
	// starved: a decision was held back for want of room under
	// MaxInFlight since the partitions were last woken.
	starved atomic.Bool
	// timers counts the in-memory timers of loaded sagas.
	timers  atomic.Int64
	stats   stats
	metrics *metrics // nil without Config.Registerer
	tracer  *tracer  // nil without Config.TracerProvider
}

// New validates cfg and returns a coordinator; Start runs it.
func New(js jetstream.JetStream, cfg Config) (*Coordinator, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: JetStream is nil", ErrInvalidConfig)
	}
	adopt := cfg.Topology.Partitions == 0
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// The coordinator keeps many writes in flight (appends, requests,
	// index updates) and waits for room rather than failing when the
	// window is full.
	js, err := streams.Derive(js, jetstream.WithPublishAsyncMaxPending(asyncWindow), jetstream.WithDefaultTimeout(cfg.RequestTimeout))
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	c := &Coordinator{
		cfg:      cfg,
		adopt:    adopt,
		js:       js,
		nc:       js.Conn(),
		logger:   cfg.Logger.With("coordinator", cfg.Name),
		source:   events.SourceCoordinator + "/" + cfg.Name,
		log:      streams.NewLogIn(js, cfg.Topology.Namespace),
		ns:       cfg.Topology.Namespace,
		graphs:   machine.NewGraphs(),
		parts:    map[int]*partition{},
		starting: map[int]uint64{},
	}
	m, err := newMetrics(c, cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("coordinator: metrics: %w", err)
	}
	c.metrics = m
	c.tracer = newTracer(cfg.TracerProvider)
	return c, nil
}

// Start checks the server (JetStream enabled, version at least
// MinServerVersion), applies the topology, and starts driving the
// configured partitions: it recovers their sagas in flight and consumes
// their inputs. It returns once every partition is consuming; recovery
// goes on in the background. Start is idempotent and safe to call with
// Stop: a Stop during Start cancels it. After a failed Start nothing runs,
// and Start may be called again.
func (c *Coordinator) Start(ctx context.Context) error {
	err := c.life.Start(ctx, c.start)
	if errors.Is(err, startstop.ErrStopped) {
		return ErrStopped
	}
	return err
}

// start tries startOnce until it succeeds, ctx ends, or it fails in a way
// only a person can fix (startFailure). Anything else — no server yet, a
// JetStream leader being elected, timeouts — is logged and tried again with
// backoff, so a coordinator started during a cluster's trouble comes up
// when the cluster does.
func (c *Coordinator) start(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for {
		err := c.startOnce(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		}
		if permanent := c.startFailure(err); permanent != nil {
			return permanent
		}
		c.logger.Warn("cannot start yet; retrying", "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// startFailure returns the error to give up with if err, from a failed
// start, needs a person: a server jetsaga cannot use, a configuration that
// does not fit the deployed topology, missing permissions. It returns nil
// for what passes on its own: no responders, timeouts, JetStream or its
// cluster not ready, a connection being (re)established.
func (c *Coordinator) startFailure(err error) error {
	// A publish the server refuses for want of permission only times
	// out; the refusal itself comes as an asynchronous error.
	if last := c.nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
		return fmt.Errorf("%w: %w (after: %w)", ErrServer, last, err)
	}
	if denied := c.leaseDenied.Load(); denied != nil {
		return fmt.Errorf("%w: lease connection: %w (after: %w)", ErrServer, *denied, err)
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, ErrServer), errors.Is(err, ErrInvalidConfig):
		return err
	case errors.Is(err, errNotConnected), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return nil
	case errors.As(err, &apiErr) && apiErr.Code == 503: // JetStream (or its cluster) not ready
		return nil
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoPeers:
		// "no suitable peers for placement": a node is down or not yet
		// heard from; placement works once it is back.
		return nil
	}
	return err
}

// errCodeNoPeers is the server's JSClusterNoPeersErr ("no suitable peers
// for placement"), which nats.go has no constant for.
const errCodeNoPeers jetstream.ErrorCode = 10005

// errNotConnected: the connection is not (yet, or no longer) up.
var errNotConnected = errors.New("not connected to NATS")

func (c *Coordinator) startOnce(ctx context.Context) error {
	if err := c.checkServer(ctx); err != nil {
		return err
	}
	if c.adopt {
		n, err := c.ns.DeployedPartitions(ctx, c.js)
		if err != nil {
			return fmt.Errorf("coordinator: %w", err)
		}
		if n > 0 && n != c.cfg.Topology.Partitions {
			c.cfg.Topology.Partitions = n
			if err := c.cfg.validate(); err != nil {
				return err
			}
		}
	}
	if err := streams.Apply(ctx, c.js, c.cfg.Topology); err != nil {
		return fmt.Errorf("coordinator: topology: %w", err)
	}
	ix, err := index.Open(ctx, c.js, c.ns)
	if err != nil {
		return err
	}
	c.ix = ix
	if c.defs, err = defs.Open(ctx, c.js, c.ns); err != nil {
		return err
	}
	fail := func(err error) error {
		c.teardown(ctx)
		return err
	}
	svc, err := c.serve()
	c.mu.Lock()
	c.svc = svc
	c.mu.Unlock()
	if err != nil {
		return fail(fmt.Errorf("coordinator: serve status: %w", err))
	}
	if c.cfg.Partitions != nil {
		for _, p := range c.cfg.Partitions {
			part, err := c.startPartition(ctx, p, 0)
			if err != nil {
				return fail(err)
			}
			c.mu.Lock()
			c.parts[p] = part
			c.mu.Unlock()
		}
	} else {
		ljs, err := c.leaseJetStream()
		if err != nil {
			return fail(err)
		}
		keeper, err := lease.New(ctx, ljs, lease.Config{Namespace: c.ns, Name: c.cfg.Name, Partitions: c.cfg.Topology.Partitions,
			TTL: c.cfg.LeaseTTL, Logger: c.logger, Acquire: c.acquire, Lose: c.lose, Healthy: c.dataPathUp})
		if err != nil {
			return fail(err)
		}
		c.mu.Lock()
		c.leases = keeper
		c.mu.Unlock()
		if err := keeper.Start(ctx); err != nil {
			return fail(err)
		}
		c.awaitDriven(ctx)
	}
	c.mu.Lock()
	n := len(c.parts)
	c.mu.Unlock()
	c.logger.Info("coordinator started", "partitions", n, "server", c.nc.ConnectedUrlRedacted())
	return nil
}

// leaseJetStream opens the lease keeper's own connection, with the options
// of the coordinator's (servers, credentials, TLS, inbox prefix), and a
// JetStream context on it with the same domain or API prefix. Renewals
// then never wait behind the data path: neither in its async publish
// window nor in its socket.
func (c *Coordinator) leaseJetStream() (jetstream.JetStream, error) {
	opts := c.nc.Opts
	opts.Name = strings.TrimSpace(opts.Name + " jetsaga-leases " + c.cfg.Name)
	// The user's callbacks are for the user's connection.
	opts.ConnectedCB, opts.DisconnectedCB, opts.DisconnectedErrCB, opts.ReconnectedCB, opts.ClosedCB = nil, nil, nil, nil, nil
	opts.DiscoveredServersCB, opts.LameDuckModeHandler = nil, nil
	opts.AsyncErrorCB = func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.logger.Warn("lease connection", "error", err)
		if errors.Is(err, nats.ErrPermissionViolation) {
			c.leaseDenied.Store(&err)
		}
	}
	opts.MaxReconnect = -1 // leases must come back whenever the servers do
	nc, err := opts.Connect()
	if err != nil {
		return nil, fmt.Errorf("coordinator: lease connection: %w", err)
	}
	js, err := streams.DeriveOn(c.js, nc, jetstream.WithDefaultTimeout(c.cfg.RequestTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("coordinator: lease connection: %w", err)
	}
	c.mu.Lock()
	c.leaseNC = nc
	c.mu.Unlock()
	return js, nil
}

// dataPathUp reports whether the coordinator's own connection is up: the
// leases, on their own connection, are renewed only while it is.
func (c *Coordinator) dataPathUp() error {
	if !c.nc.IsConnected() {
		return fmt.Errorf("the data connection is %s", c.nc.Status())
	}
	return nil
}

// teardown stops what start started, in order: status requests, leases
// (each partition drained, then its lease released), pinned partitions. The lifecycle then cancels the coordinator's
// context and waits for its goroutines.
func (c *Coordinator) teardown(ctx context.Context) {
	c.mu.Lock()
	svc, leases := c.svc, c.leases
	c.svc = nil
	c.mu.Unlock()
	if svc != nil {
		_ = svc.Stop()
	}
	// With leases, stopping the keeper stops each partition (draining it)
	// and then releases its lease, so another coordinator takes it over at
	// once rather than after the lease's TTL.
	if leases != nil {
		leases.Stop(ctx)
	}
	c.mu.Lock()
	lnc := c.leaseNC
	c.leaseNC = nil
	c.mu.Unlock()
	if lnc != nil {
		lnc.Close()
	}
	c.mu.Lock()
	parts := c.parts
	c.parts = map[int]*partition{}
	c.starting = map[int]uint64{} // a partition still starting stops itself (drive)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { p.stop(ctx) })
	}
	wg.Wait()
}

// checkServer fails fast, with one clear message, on a server jetsaga
// cannot use.
func (c *Coordinator) checkServer(ctx context.Context) error {
	if !c.nc.IsConnected() {
		return fmt.Errorf("coordinator: %w (%s)", errNotConnected, c.nc.Status())
	}
	v := c.nc.ConnectedServerVersion()
	if !versionAtLeast(v, MinServerVersion) {
		return fmt.Errorf("%w: the NATS server at %s is version %s; jetsaga needs %s or newer (for message schedules)",
			ErrServer, c.nc.ConnectedUrlRedacted(), v, MinServerVersion)
	}
	if _, err := c.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("%w: JetStream is not enabled on the NATS server at %s (start it with -js)", ErrServer, c.nc.ConnectedUrlRedacted())
		}
		return fmt.Errorf("coordinator: JetStream at %s: %w", c.nc.ConnectedUrlRedacted(), err)
	}
	return nil
}

// versionAtLeast compares dotted versions ("2.15.2", "2.12.0-beta").
func versionAtLeast(have, want string) bool {
	parse := func(v string) [3]int {
		var out [3]int
		v, _, _ = strings.Cut(v, "-")
		for i, part := range strings.SplitN(v, ".", 3) {
			out[i], _ = strconv.Atoi(part)
		}
		return out
	}
	h, w := parse(have), parse(want)
	for i := range h {
		if h[i] != w[i] {
			return h[i] > w[i]
		}
	}
	return true
}

// Stop stops consuming, finishes the inputs it has taken, and returns when
// every goroutine has ended or ctx is done. Unfinished sagas stay in flight
// in the log, for the next coordinator. Stop is idempotent, and safe to
// call during or after a failed Start.
func (c *Coordinator) Stop(ctx context.Context) error {
	ran := false
	err := c.life.Stop(ctx, func(ctx context.Context) {
		ran = true
		c.teardown(ctx)
	})
	if ran {
		c.logger.Info("coordinator stopped")
	}
	return err
}

// Ready reports whether the coordinator can do its work: started and not
// stopped, connected to NATS (the topology was verified by Start), and,
// with leases, either driving partitions or standing by as a member
// (drained counts as ready: it is there on purpose).
func (c *Coordinator) Ready() error {
	c.mu.Lock()
	leases, parts := c.leases, len(c.parts)
	c.mu.Unlock()
	switch {
	case !c.life.Running():
		return errors.New("coordinator: not running")
	case !c.nc.IsConnected():
		return errors.New("coordinator: not connected to NATS")
	case leases == nil && parts != len(c.cfg.Partitions):
		return fmt.Errorf("coordinator: drives %d of its %d pinned partitions", parts, len(c.cfg.Partitions))
	}
	return nil
}

// ErrPinned is returned by Drain for a coordinator whose partitions are
// pinned (Config.Partitions): there are no leases to hand off.
var ErrPinned = errors.New("coordinator: partitions are pinned, not leased: nothing to drain")

// Drain hands every partition off to the other coordinators and takes
// none until Undrain, for maintenance: the process keeps running (and
// answering status). Inputs being handled finish first.
func (c *Coordinator) Drain(ctx context.Context) error {
	if c.leases == nil {
		return ErrPinned
	}
	c.leases.Drain(ctx)
	c.logger.Info("coordinator drained: partitions handed off")
	return nil
}

// Undrain lets a drained coordinator take partitions again.
func (c *Coordinator) Undrain() error {
	if c.leases == nil {
		return ErrPinned
	}
	c.leases.Undrain()
	c.logger.Info("coordinator undrained: taking partitions again")
	return nil
}

// acquire starts driving partition p, newly leased with epoch. It returns
// at once: the lease keeper calls it on the goroutine that renews every
// lease, which must never wait on the data path. The partition starts in
// the background (drive).
func (c *Coordinator) acquire(p int, epoch uint64) error {
	if c.life.Stopping() {
		return ErrStopped
	}
	c.mu.Lock()
	_, driven := c.parts[p]
	_, starting := c.starting[p]
	if !driven && !starting {
		c.starting[p] = epoch
	}
	c.mu.Unlock()
	if !driven && !starting {
		c.life.Go(func(ctx context.Context) { c.drive(ctx, p, epoch) })
	}
	return nil
}

// awaitDriven waits until the partitions taken so far are driven (or ctx
// ends), so that Start returns with them consuming.
func (c *Coordinator) awaitDriven(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		c.mu.Lock()
		n := len(c.starting)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drive starts partition p under the lease of epoch, and tries again while
// the lease is held: creating its consumers fails while a stream elects a
// leader, and nobody could do better meanwhile.
func (c *Coordinator) drive(ctx context.Context, p int, epoch uint64) {
	delay := 100 * time.Millisecond
	for {
		c.mu.Lock()
		current := c.starting[p] == epoch
		c.mu.Unlock()
		if !current || ctx.Err() != nil {
			return // lost, or stopping
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		part, err := c.startPartition(sctx, p, epoch)
		cancel()
		if err == nil {
			c.mu.Lock()
			current = c.starting[p] == epoch
			if current {
				delete(c.starting, p)
				c.parts[p] = part
			}
			c.mu.Unlock()
			if !current { // lost while starting
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				part.stop(sctx)
				cancel()
				return
			}
			c.stats.acquired.Add(1)
			return
		}
		c.logger.Warn("cannot drive partition yet; retrying", "partition", p, "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// lose stops driving partition p. It returns at once (like acquire, it is
// called on the lease keeper's goroutine): the partition is fenced already
// (the keeper no longer vouches for its lease) and drains in the
// background; what it leaves unacknowledged goes to the next owner.
func (c *Coordinator) lose(p int) {
	c.mu.Lock()
	delete(c.starting, p)
	part, ok := c.parts[p]
	delete(c.parts, p)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.life.Go(func(ctx context.Context) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		part.stop(sctx)
		c.stats.lost.Add(1)
		c.logger.Info("stopped driving partition", "partition", p)
	})
}

// owns reports whether the coordinator may write for partition p under
// the lease of epoch now: that lease is held and not past the time it can
// be trusted. Checked before every append, so a coordinator paused past
// its lease writes nothing when it wakes, and a partition still draining
// after its lease was lost writes nothing even if the coordinator has
// taken the partition again meanwhile (under a new epoch). (The append's
// optimistic concurrency is what makes it safe even if a pause falls
// between this check and the write.)
func (c *Coordinator) owns(p int, epoch uint64) bool {
	if c.leases == nil {
		return true
	}
	e, ok := c.leases.Owns(p)
	return ok && e == epoch
}

// goFunc runs f in a goroutine that Stop waits for.
func (c *Coordinator) goFunc(f func()) { c.life.Go(func(context.Context) { f() }) }

// opCtx bounds one NATS call.
func (c *Coordinator) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.life.Context(), c.cfg.RequestTimeout)
}

// claimChunk is the most places of Config.MaxInFlight one decision
// claims: more nodes than that rarely become ready at once, and a claim
// holds its places from other partitions only while the machine decides.
const claimChunk = 64

// claimRoom claims places for requests under Config.MaxInFlight, for one
// decision (0 without the bound, or when it is reached); the decision
// gives back what it does not use.
func (c *Coordinator) claimRoom() int {
	if c.cfg.MaxInFlight == 0 {
		return 0
	}
	for {
		cur := c.inflight.Load()
		n := min(claimChunk, int64(c.cfg.MaxInFlight)-cur)
		if n <= 0 {
			return 0
		}
		if c.inflight.CompareAndSwap(cur, cur+n) {
			return int(n)
		}
	}
}

// release frees n places under Config.MaxInFlight (requests finished,
// sagas evicted or handed off, reservations ended). If a decision was
// held back for want of room since the last wake, every partition is
// woken to advance its held-back sagas: whatever frees room wakes them,
// so none waits for a wake that never comes.
func (c *Coordinator) release(n int) {
	if n <= 0 {
		return
	}
	c.inflight.Add(-int64(n))
	if c.cfg.MaxInFlight > 0 && c.starved.Swap(false) {
		c.wakeAll()
	}
}

// wakeAll tells every partition there may be room for held-back sagas.
func (c *Coordinator) wakeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.parts {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// stats are the coordinator's counters.
type stats struct {
	recovered, expired, recoveryFailures, rejected, conflicts, started, finished atomic.Int64
	skipped, observedFinished, acquired, lost, fenced                            atomic.Int64
	// stuck and waiting count the sagas loaded here that wait for an
	// operator: stuck on a failed undo, or waiting after a failure.
	stuck, waiting   atomic.Int64
	mu               sync.Mutex
	lastFailures     []string
	lastRecovery     time.Time
	lastPass         RecoveryPass
	recentRecoveries []string
}

// RecoveryPass summarizes one recovery pass over a partition's sagas in
// flight.
type RecoveryPass struct {
	Partition int       `json:"partition"`
	At        time.Time `json:"at"`
	// Listed are the sagas marked in flight; each was recovered, skipped
	// (already driven here, or not started yet), found finished, or failed
	// to load (tried again next pass).
	Listed    int `json:"listed"`
	Recovered int `json:"recovered"`
	Skipped   int `json:"skipped"`
	Finished  int `json:"finished"`
	Failed    int `json:"failed"`
}

func (s *stats) pass(p RecoveryPass) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastRecovery = p.At
	// The last pass that found something is the one worth showing.
	if p.Listed > 0 || p.Failed > 0 || s.lastPass.At.IsZero() {
		s.lastPass = p
	}
}

func (s *stats) recoveredSaga(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recentRecoveries = append(s.recentRecoveries, id)
	if len(s.recentRecoveries) > 20 {
		s.recentRecoveries = s.recentRecoveries[len(s.recentRecoveries)-20:]
	}
}

func (s *stats) failure(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFailures = append(s.lastFailures, msg)
	if len(s.lastFailures) > 20 {
		s.lastFailures = s.lastFailures[len(s.lastFailures)-20:]
	}
}

// Status is what a coordinator reports about itself.
type Status struct {
	Name       string            `json:"name"`
	Partitions []PartitionStatus `json:"partitions"`
	// InFlightSagas are the sagas loaded and not finished.
	InFlightSagas int `json:"in_flight_sagas"`
	// InFlightRequests are requests awaiting replies or retries.
	InFlightRequests int64 `json:"in_flight_requests"`
	// Stuck and Waiting count the sagas in flight here that wait for an
	// operator: stuck on a failed undo, or waiting after a node failed
	// (on_failure: pause, or past a pivot).
	Stuck     int64 `json:"sagas_stuck"`
	Waiting   int64 `json:"sagas_waiting"`
	Started   int64 `json:"sagas_started"`
	Finished  int64 `json:"sagas_finished"`
	Recovered int64 `json:"sagas_recovered"`
	// Expired counts finished sagas removed after their retention.
	Expired          int64 `json:"sagas_expired"`
	RecoveryFailures int64 `json:"recovery_failures"`
	// Rejected counts inputs ignored as stale, duplicate, forged or
	// malformed.
	Rejected  int64 `json:"inputs_rejected"`
	Conflicts int64 `json:"write_conflicts"`
	// Skipped counts in-flight sagas a recovery pass found already driven
	// here; ObservedFinished those it found finished (their markers removed).
	Skipped          int64 `json:"recovery_skipped"`
	ObservedFinished int64 `json:"recovery_observed_finished"`
	// LeasesAcquired and LeasesLost count partitions taken and given up
	// (lost, expired or handed off); Fenced counts appends not made because
	// the lease could no longer be trusted.
	LeasesAcquired int64 `json:"leases_acquired"`
	LeasesLost     int64 `json:"leases_lost"`
	Fenced         int64 `json:"appends_fenced"`
	Pinned         bool  `json:"pinned,omitempty"`
	// Draining: an operator drained the coordinator; it holds no
	// partition until undrained.
	Draining     bool      `json:"draining,omitempty"`
	LastRecovery time.Time `json:"last_recovery,omitzero"`
	// LastPass is the latest recovery pass that found sagas in flight.
	LastPass RecoveryPass `json:"last_pass"`
	// RecentRecoveries are the latest sagas recovered (ids).
	RecentRecoveries []string `json:"recent_recoveries,omitempty"`
	RecentFailures   []string `json:"recent_failures,omitempty"`
	// Process describes the coordinator's process.
	Process ProcessStats `json:"process"`
}

// countStatus moves a loaded saga from one status to another in the
// counts of sagas waiting for an operator (old or new "" for none).
func (c *Coordinator) countStatus(old, new machine.Status) {
	for _, s := range []struct {
		st machine.Status
		d  int64
	}{{old, -1}, {new, 1}} {
		switch s.st {
		case machine.StatusStuck:
			c.stats.stuck.Add(s.d)
		case machine.StatusWaiting:
			c.stats.waiting.Add(s.d)
		}
	}
}

// PartitionStatus describes one partition the coordinator drives.
type PartitionStatus struct {
	ID int `json:"id"`
	// Epoch is the revision of the partition's lease (0 when pinned).
	Epoch uint64 `json:"epoch"`
	Sagas int    `json:"sagas"`
}

// Status reports the coordinator's partitions and counters.
func (c *Coordinator) Status() Status {
	c.mu.Lock()
	parts := make([]*partition, 0, len(c.parts))
	for _, p := range c.parts {
		parts = append(parts, p)
	}
	leases := c.leases
	c.mu.Unlock()
	st := Status{Name: c.cfg.Name, InFlightRequests: c.inflight.Load(), Started: c.stats.started.Load(),
		Finished: c.stats.finished.Load(), Recovered: c.stats.recovered.Load(), Expired: c.stats.expired.Load(), RecoveryFailures: c.stats.recoveryFailures.Load(),
		Rejected: c.stats.rejected.Load(), Conflicts: c.stats.conflicts.Load(), Skipped: c.stats.skipped.Load(),
		ObservedFinished: c.stats.observedFinished.Load(), LeasesAcquired: c.stats.acquired.Load(), LeasesLost: c.stats.lost.Load(),
		Fenced: c.stats.fenced.Load(), Pinned: c.cfg.Partitions != nil, Process: processStats(),
		Stuck: c.stats.stuck.Load(), Waiting: c.stats.waiting.Load()}
	if leases != nil {
		st.Draining = leases.Draining()
	}
	slices.SortFunc(parts, func(a, b *partition) int { return a.id - b.id })
	for _, p := range parts {
		n := int(p.loaded.Load())
		st.Partitions = append(st.Partitions, PartitionStatus{ID: p.id, Epoch: p.epoch, Sagas: n})
		st.InFlightSagas += n
	}
	c.stats.mu.Lock()
	st.LastRecovery = c.stats.lastRecovery
	st.LastPass = c.stats.lastPass
	st.RecentRecoveries = append([]string(nil), c.stats.recentRecoveries...)
	st.RecentFailures = append([]string(nil), c.stats.lastFailures...)
	c.stats.mu.Unlock()
	return st
}
