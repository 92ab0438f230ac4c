package participant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/streams"
)

// Participant runs the handlers of the actions registered with it for the
// requests coordinators send. Several participants (in one process or many)
// may serve the same action: they share its durable consumer and so share
// its requests.
type Participant struct {
	js     jetstream.JetStream
	cfg    Config
	log    *slog.Logger
	source string       // CloudEvents source of replies
	owner  string       // barrier lock owner: name and instance id
	tick   atomic.Int64 // progress and lock renewal interval (time.Duration); see shortenTick

	mu      sync.Mutex
	state   lifecycle
	actions map[string]*action
	barrier *records // nil when disabled
	metrics *metrics // nil without Config.Registerer
	tracer  trace.Tracer

	slots    chan struct{}   // one per running handler
	stopping chan struct{}   // closed by Stop
	done     chan struct{}   // closed when every goroutine ended
	base     context.Context // handlers' base; cancelled when Stop runs out of time
	hardStop context.CancelCauseFunc
	svc      micro.Service  // streams.ParticipantService, unless Config.DisableService
	loops    sync.WaitGroup // one consume loop per action
	running  sync.WaitGroup // handlers
}

type lifecycle int

const (
	lifecycleNew lifecycle = iota
	lifecycleStarted
	lifecycleStopped
)

// action is one registered action and its consumer.
type action struct {
	name     string
	do, undo Handler

	mu   sync.Mutex // guards iter, replaced when the consumer is recreated
	iter jetstream.MessagesContext

	count counters // for the micro service's stats
}

// Timing of retries, as naks with a delay.
const (
	// ioTimeout bounds each KV operation and reply publish.
	ioTimeout = 10 * time.Second
	// retryBase and retryMax: a request whose reply or barrier write failed
	// comes back after retryBase, doubling with each delivery to retryMax.
	retryBase = 500 * time.Millisecond
	retryMax  = 15 * time.Second
	// waitMin and waitMax bound the delay of a request waiting for another
	// worker's lock.
	waitMin = 50 * time.Millisecond
	waitMax = time.Second
	// corruptDelay: a request whose barrier record cannot be read waits
	// this long for an operator.
	corruptDelay = time.Minute
	// reopenMax is the longest pause between attempts to recreate a
	// consumer that disappeared.
	reopenMax = 5 * time.Second
)

// New returns a participant using js, after checking cfg: every problem is
// reported at once (errors.Join), each wrapping ErrInvalidConfig. Register
// actions, then Start.
func New(js jetstream.JetStream, cfg Config) (*Participant, error) {
	var errs []error
	if js == nil {
		errs = append(errs, fmt.Errorf("%w: JetStream is nil", ErrInvalidConfig))
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Name, cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("participant: metrics: %w", err)
	}
	var tr trace.Tracer
	if cfg.TracerProvider != nil {
		tr = cfg.TracerProvider.Tracer("github.com/jetsaga/jetsaga/participant")
	}
	p := &Participant{
		tracer:   tr,
		metrics:  m,
		js:       js,
		cfg:      cfg,
		log:      cfg.Logger.With("participant", cfg.Name),
		source:   events.SourceParticipant + "/" + cfg.Name,
		owner:    cfg.Name + "/" + uuid.NewString(),
		actions:  map[string]*action{},
		slots:    make(chan struct{}, cfg.Concurrency),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	p.tick.Store(int64(min(cfg.AckWait, cfg.LockTTL) / 3))
	return p, nil
}

// progressEvery is how often a request in hand is reported in progress
// (and its barrier lock renewed).
func (p *Participant) progressEvery() time.Duration { return time.Duration(p.tick.Load()) }

// Register sets the handlers of the action called name (such as
// "payments.charge"): do runs its requests, undo its undo requests (they
// come on the action's subject too). undo may be nil
// for an action without compensation: an undo request then gets a
// permanent error (unless the barrier knows the action never ran), and the
// saga gets stuck, visibly. Register must be called before Start. Errors
// wrap ErrInvalidRegistration (and streams.ErrInvalidActionName for a bad
// name), or are ErrStarted.
func (p *Participant) Register(name string, do, undo Handler) error {
	if err := streams.ValidateActionName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRegistration, err)
	}
	if do == nil {
		return fmt.Errorf("%w: action %s: do handler is nil", ErrInvalidRegistration, name)
	}
	return p.register(name, do, undo)
}

func (p *Participant) register(name string, do, undo Handler) error {
	if err := streams.ValidateActionName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRegistration, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != lifecycleNew {
		return fmt.Errorf("%w: cannot register action %s", ErrStarted, name)
	}
	if _, ok := p.actions[name]; ok {
		return fmt.Errorf("%w: action %s is registered already", ErrInvalidRegistration, name)
	}
	p.actions[name] = &action{name: name, do: do, undo: undo}
	return nil
}

// RegisterUndo sets the handler of an undo that undoes no action of a
// participant: an await node's undo (saga.Await(...).Undo(name)), which
// runs when the saga unwinds past the await node after it took its signal
// (the request's Output is the signal's data). Its requests come on
// name's subject with op undo; a do request there gets a permanent error.
// It must be called before Start.
func (p *Participant) RegisterUndo(name string, undo Handler) error {
	if undo == nil {
		return fmt.Errorf("%w: undo %s: handler is nil", ErrInvalidRegistration, name)
	}
	return p.register(name, nil, undo)
}

// Start checks the topology (the JETSAGA_WORK stream and, with the barrier
// on, the barrier bucket must exist: a missing one is a
// *streams.MissingError), binds to each action's durable consumer (creating
// it with the protocol's config if it does not exist; see open), and
// starts handling requests. It returns once they are being
// consumed; ctx bounds only that. Start is idempotent; after Stop it
// returns ErrStopped. With nothing registered it returns ErrNoActions.
func (p *Participant) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case lifecycleStarted:
		return nil
	case lifecycleStopped:
		return ErrStopped
	}
	if len(p.actions) == 0 {
		return ErrNoActions
	}
	if err := p.checkTopology(ctx); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(p.actions))
	for i, name := range names {
		a := p.actions[name]
		it, err := p.open(ctx, a.name)
		if err != nil {
			for _, prev := range names[:i] {
				p.actions[prev].iter.Stop()
			}
			return err
		}
		a.iter = it
	}
	if !p.cfg.DisableService {
		svc, err := p.serve()
		if err != nil {
			for _, name := range names {
				p.actions[name].iter.Stop()
			}
			return fmt.Errorf("participant: register micro service %s: %w", streams.ParticipantService, err)
		}
		p.svc = svc
	}
	p.base, p.hardStop = context.WithCancelCause(context.WithoutCancel(ctx))
	for _, name := range names {
		a := p.actions[name]
		p.loops.Go(func() { p.consume(a) })
	}
	p.state = lifecycleStarted
	p.log.Info("participant started", "actions", names, "barrier", p.barrier != nil,
		"concurrency", p.cfg.Concurrency, "ack_wait", p.cfg.AckWait)
	return nil
}

// checkTopology fails fast, naming what is missing, when the stream or
// bucket the participant needs does not exist; it binds the barrier bucket.
func (p *Participant) checkTopology(ctx context.Context) error {
	var errs []error
	if _, err := p.js.Stream(ctx, p.cfg.Namespace.WorkStream()); errors.Is(err, jetstream.ErrStreamNotFound) {
		errs = append(errs, &streams.MissingError{Kind: "stream", Name: p.cfg.Namespace.WorkStream()})
	} else if err != nil {
		errs = append(errs, fmt.Errorf("participant: look up stream %s: %w", p.cfg.Namespace.WorkStream(), err))
	}
	if !p.cfg.DisableBarrier {
		kv, err := p.js.KeyValue(ctx, p.cfg.Namespace.BarrierBucket())
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			errs = append(errs, &streams.MissingError{Kind: "bucket", Name: p.cfg.Namespace.BarrierBucket()})
		case err != nil:
			errs = append(errs, fmt.Errorf("participant: bind bucket %s: %w", p.cfg.Namespace.BarrierBucket(), err))
		default:
			p.barrier = &records{kv: kv}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("participant: topology not ready (run streams.Apply or jetsaga dev first): %w", err)
	}
	return nil
}

// open binds to action's consumer, creating it with the protocol's config
// if it does not exist, and starts fetching from it. An existing consumer
// is used as it is, never updated: participants of one action in other
// languages, or with another AckWait, may have created it, and changing a
// shared consumer under them is an operator's decision. Progress is sent
// often enough for the consumer's actual ack wait.
func (p *Participant) open(ctx context.Context, name string) (jetstream.MessagesContext, error) {
	want := p.cfg.Namespace.ActionConsumer(name, p.cfg.AckWait)
	cons, err := p.js.Consumer(ctx, p.cfg.Namespace.WorkStream(), want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = p.js.CreateConsumer(ctx, p.cfg.Namespace.WorkStream(), want)
		if errors.Is(err, jetstream.ErrConsumerExists) { // another participant was first
			cons, err = p.js.Consumer(ctx, p.cfg.Namespace.WorkStream(), want.Durable)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("participant: consumer of action %s: %w", name, err)
	}
	got := cons.CachedInfo().Config
	unusable, diffs := p.cfg.Namespace.CheckActionConsumer(name, got)
	if unusable != "" {
		return nil, fmt.Errorf("participant: action %s: %s; delete it (nats consumer rm %s %s) and a participant creates it again", name, unusable, p.cfg.Namespace.WorkStream(), want.Durable)
	}
	for _, d := range diffs {
		p.log.Warn("participant: the action's consumer differs from the protocol's config; using it as it is", "action", name, "consumer", want.Durable, "difference", d)
	}
	if got.AckWait != p.cfg.AckWait {
		p.log.Info("participant: the action's consumer has another ack wait than this participant's AckWait; progress follows the consumer's", "action", name, "consumer_ack_wait", got.AckWait, "ack_wait", p.cfg.AckWait)
	}
	p.shortenTick(got.AckWait / 3)
	it, err := cons.Messages(jetstream.PullMaxMessages(p.cfg.Concurrency),
		jetstream.PullHeartbeat(streams.PullHeartbeat), jetstream.PullExpiry(streams.PullExpiry))
	if err != nil {
		return nil, fmt.Errorf("participant: consume action %s: %w", name, err)
	}
	return it, nil
}

// Stop stops taking requests and waits for the handlers running to finish
// and their replies to be sent (requests fetched but not started are given
// back at once, for another participant). If ctx ends first, the handlers'
// contexts are cancelled (cause ErrStopping), their requests given back
// without a reply, and Stop returns ctx's error once they have returned.
// Stop is idempotent and may be called before Start.
func (p *Participant) Stop(ctx context.Context) error {
	p.mu.Lock()
	switch p.state {
	case lifecycleNew:
		p.state = lifecycleStopped
		close(p.stopping)
		close(p.done)
	case lifecycleStarted:
		p.state = lifecycleStopped
		p.log.Info("participant stopping")
		close(p.stopping)
		if p.svc != nil {
			_ = p.svc.Stop()
		}
		for _, a := range p.actions {
			a.mu.Lock()
			a.iter.Drain()
			a.mu.Unlock()
		}
		go func() { // owned by Stop: done is closed when it ends
			p.loops.Wait()
			p.running.Wait()
			p.hardStop(ErrStopping) // releases the context
			p.log.Info("participant stopped")
			close(p.done)
		}()
	}
	p.mu.Unlock()

	select {
	case <-p.done:
		return nil
	default:
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	p.log.Warn("participant: stop timed out; cancelling running handlers", "error", ctx.Err())
	p.hardStop(ErrStopping)
	<-p.done
	return fmt.Errorf("participant: stop: %w", ctx.Err())
}

// consume hands action a's requests to handlers, at most Concurrency at a
// time over all actions, until Stop.
func (p *Participant) consume(a *action) {
	log := p.log.With("action", a.name)
	a.mu.Lock()
	it := a.iter
	a.mu.Unlock()
	for {
		msg, err := it.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				log.Warn("participant: fetching requests", "error", err)
				continue
			}
			if p.isStopping() {
				return
			}
			if p.js.Conn().IsClosed() {
				log.Error("participant: NATS connection closed; no longer taking requests", "error", err)
				return
			}
			log.Warn("participant: request consumer closed; recreating it", "error", err)
			if it = p.reopen(a); it == nil {
				return
			}
			continue
		}
		if p.isStopping() || !p.acquire(msg) {
			// Stopping: give it back at once, for another participant.
			_ = msg.Nak()
			continue
		}
		p.running.Go(func() {
			defer p.release()
			p.handle(a, msg)
		})
	}
}

// reopen recreates a's consumer (it may have been deleted) until it works
// or Stop; nil means Stop.
func (p *Participant) reopen(a *action) jetstream.MessagesContext {
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		it, err := p.open(ctx, a.name)
		cancel()
		if err == nil {
			a.mu.Lock()
			defer a.mu.Unlock()
			if p.isStopping() { // Stop drained the old one before we set it
				it.Stop()
				return nil
			}
			a.iter = it
			return it
		}
		p.log.Warn("participant: recreating request consumer", "action", a.name, "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-p.stopping:
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, reopenMax)
	}
}

// shortenTick makes the progress and lock-renewal interval at most d.
func (p *Participant) shortenTick(d time.Duration) {
	d = max(d, minTick)
	for {
		cur := p.tick.Load()
		if int64(d) >= cur || p.tick.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// minTick bounds shortenTick: a consumer's ack wait can be anything.
const minTick = 10 * time.Millisecond

func (p *Participant) isStopping() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

// acquire waits for a handler slot, keeping msg from being redelivered
// meanwhile; false if Stop came first.
func (p *Participant) acquire(msg jetstream.Msg) bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTicker(p.progressEvery())
	defer t.Stop()
	for {
		select {
		case p.slots <- struct{}{}:
			return true
		case <-t.C:
			_ = msg.InProgress()
		case <-p.stopping:
			return false
		}
	}
}

func (p *Participant) release() { <-p.slots }
