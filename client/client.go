package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

var (
	// ErrNotFound: no saga has that id.
	ErrNotFound = errors.New("client: saga not found")
	// ErrTooLarge: a start's definition and params exceed the server's
	// message size limit.
	ErrTooLarge = errors.New("client: saga start too large")
	// ErrIdempotencyConflict: a saga with that id or idempotency key exists,
	// or is being started, with another definition or params. Matched by
	// every *IdempotencyConflictError.
	ErrIdempotencyConflict = errors.New("client: idempotency conflict")
)

// IdempotencyConflictError says that a start reused the id or idempotency
// key of a saga started with another definition or params: the same key
// must mean the same request.
type IdempotencyConflictError struct {
	SagaID string
	// Key is the idempotency key, "" when the start gave the saga id.
	Key string
	// Differs names what differs: "definition" and/or "params".
	Differs []string
}

func (e *IdempotencyConflictError) Error() string {
	what := fmt.Sprintf("saga id %s", e.SagaID)
	if e.Key != "" {
		what = fmt.Sprintf("idempotency key %q (saga %s)", e.Key, e.SagaID)
	}
	return fmt.Sprintf("client: %s is already used by a start with a different %s; the same key must mean the same request: use a new key for a new request",
		what, strings.Join(e.Differs, " and "))
}

// Is makes errors.Is(err, ErrIdempotencyConflict) true.
func (e *IdempotencyConflictError) Is(target error) bool { return target == ErrIdempotencyConflict }

// namespace derives saga ids from idempotency keys (UUID v5).
var namespace = uuid.MustParse("6f0c6a52-6a51-4b8e-9d0a-4f1f7e6a9c31")

// Client talks to jetsaga through JetStream.
type Client struct {
	js         jetstream.JetStream
	log        *streams.Log
	ix         *index.Index
	defs       *defs.Store
	partitions int
	maxMsg     int32
	operator   string
	ns         streams.Namespace
}

// Option configures a Client.
type Option func(*Client)

// As returns a client that records operator commands as sent by
// operator, sharing c's connection (a console acting for several people).
func (c *Client) As(operator string) *Client {
	d := *c
	d.operator = operator
	return &d
}

// WithOperator names who sends operator commands (recorded in the log).
func WithOperator(name string) Option { return func(c *Client) { c.operator = name } }

// WithNamespace makes the client talk to the jetsaga deployment of
// namespace ns (streams.Namespace) instead of the default one.
func WithNamespace(ns streams.Namespace) Option { return func(c *Client) { c.ns = ns } }

// Namespace is the namespace of the deployment c talks to.
func (c *Client) Namespace() streams.Namespace { return c.ns }

// New returns a client. It reads the partition count from the topology,
// which must exist (a coordinator or `jetsaga dev` creates it).
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Client, error) {
	c := &Client{js: js, operator: "client"}
	for _, o := range opts {
		o(c)
	}
	if err := c.ns.Validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	st, err := js.Stream(ctx, c.ns.WorkStream())
	if err != nil {
		return nil, fmt.Errorf("client: jetsaga's streams are not there (%s; start a coordinator or jetsaga dev first, in namespace %s): %w", c.ns.WorkStream(), c.ns, err)
	}
	info := st.CachedInfo()
	p, err := strconv.Atoi(info.Config.Metadata["jetsaga.partitions"])
	if err != nil || p < 1 {
		return nil, fmt.Errorf("client: stream %s has no valid jetsaga.partitions metadata", c.ns.WorkStream())
	}
	if c.ix, err = index.Open(ctx, js, c.ns); err != nil {
		return nil, err
	}
	if c.defs, err = defs.Open(ctx, js, c.ns); err != nil {
		return nil, fmt.Errorf("client: %w (start a coordinator of this release first: it creates the bucket)", err)
	}
	c.log, c.partitions, c.maxMsg = streams.NewLogIn(js, c.ns), p, info.Config.MaxMsgSize
	return c, nil
}

// StartOption configures Start.
type StartOption func(*startOptions)

type startOptions struct {
	id, key  string
	metadata map[string]string
	faults   []events.Fault
	trace    string
}

// WithSagaID gives the saga's id (a UUID); starting an id that exists
// returns it without a second run.
func WithSagaID(id string) StartOption { return func(o *startOptions) { o.id = id } }

// WithIdempotencyKey derives the saga's id from key, so starting with the
// same key again returns the same saga (the double-click problem).
func WithIdempotencyKey(key string) StartOption { return func(o *startOptions) { o.key = key } }

// WithMetadata attaches labels to the saga.
func WithMetadata(m map[string]string) StartOption { return func(o *startOptions) { o.metadata = m } }

// WithFaults injects faults into the saga as it is created, to test how
// the saga and its participants cope (see events.Fault). They are recorded
// in the saga's log. Each must name an action node of the definition.
func WithFaults(faults ...events.Fault) StartOption {
	return func(o *startOptions) { o.faults = append(o.faults, faults...) }
}

// WithTraceParent starts the saga in the W3C trace context tp
// ("00-<trace id>-<span id>-<flags>"): the saga's events and every request
// to participants carry that trace id. Without it, each saga starts a new
// trace.
func WithTraceParent(tp string) StartOption { return func(o *startOptions) { o.trace = tp } }

// newTraceParent starts a new trace.
func newTraceParent() string {
	id, span := uuid.New(), uuid.New()
	return fmt.Sprintf("00-%x-%x-01", id[:], span[:8])
}

// SagaIDForKey is the id Start gives a saga started with an idempotency key.
func SagaIDForKey(key string) string { return uuid.NewSHA1(namespace, []byte(key)).String() }

// Start asks the coordinators to start a saga and returns its id once the
// request is durable. The definition is checked first: a bad one is an
// error listing every problem. Starting a saga whose id (or idempotency
// key) exists, with the same definition and params, starts nothing and
// returns the existing saga's id; with another definition or params it is
// an *IdempotencyConflictError (ErrIdempotencyConflict), also when the
// first start is not yet decided (within the stream's duplicate window).
// Metadata, faults and trace context are not part of the comparison.
func (c *Client) Start(ctx context.Context, def *saga.Definition, params any, opts ...StartOption) (string, error) {
	var o startOptions
	for _, f := range opts {
		f(&o)
	}
	if err := saga.Validate(def); err != nil {
		return "", err
	}
	if len(o.faults) > 0 {
		g, err := saga.Compile(def)
		if err != nil {
			return "", err
		}
		if err := machine.CheckFaults(g, o.faults); err != nil {
			return "", fmt.Errorf("client: %w", err)
		}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return "", fmt.Errorf("client: params: %w", err)
	}
	id := o.id
	switch {
	case id != "" && o.key != "":
		return "", errors.New("client: give a saga id or an idempotency key, not both")
	case o.key != "":
		id = SagaIDForKey(o.key)
	case id == "":
		// Time-ordered (UUID version 7): a finished saga is found in the
		// archive from its id's time (streams.Log.Archived).
		id = uuid.Must(uuid.NewV7()).String()
	}
	if err := streams.ValidateSagaID(id); err != nil {
		return "", err
	}
	cmd := &events.StartSaga{SagaCreated: events.SagaCreated{Definition: def, Params: raw, IdempotencyKey: o.key, Metadata: o.metadata}, Faults: o.faults}
	tp := o.trace
	switch {
	case tp == "":
		tp = newTraceParent()
	case events.ChildTraceParent(tp, "") == "":
		return "", fmt.Errorf("client: trace parent %q is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)", tp)
	}
	// The partition's owner decides first, and says whether this start
	// created the saga. If none answers, a saga that exists answers for
	// itself; otherwise the command goes out, and the stream's
	// deduplication on its id says whether another start of the same saga
	// is on its way.
	answer, err := c.startDirect(ctx, id, tp, cmd)
	switch {
	case err != nil:
		return "", err
	case answer.OK && (answer.Created || o.id == "" && o.key == ""):
		return id, nil // created by this start, or a fresh random id: nothing earlier to compare with
	case answer.OK || answer.Error != "":
		// The saga exists, or the start was refused: it may be an
		// earlier start's saga, which the coordinator took for this one
		// or found to differ.
		existing, err := c.created(ctx, id)
		if err != nil {
			return "", err
		}
		if existing != nil {
			if differs := cmd.Differences(existing); len(differs) > 0 {
				return "", &IdempotencyConflictError{SagaID: id, Key: o.key, Differs: differs}
			}
		}
		if answer.Error != "" {
			return "", fmt.Errorf("client: start saga %s: %s", id, answer.Error)
		}
		if existing == nil {
			return "", fmt.Errorf("client: the coordinator started saga %s, and its log is not there", id)
		}
		return id, nil
	}
	var existing *events.SagaCreated
	if o.id != "" || o.key != "" { // a fresh random id names no saga yet
		if existing, err = c.created(ctx, id); err != nil {
			return "", err
		}
	}
	if existing == nil {
		// No coordinator took it now: the command waits for one.
		ack, err := c.commandTraced(ctx, id, "start:"+id, tp, cmd)
		if err != nil {
			return "", err
		}
		if !ack.Duplicate {
			return id, nil
		}
		if existing, err = c.startCommand(ctx, ack.Sequence); err != nil {
			return "", err
		}
	}
	if differs := cmd.Differences(existing); len(differs) > 0 {
		return "", &IdempotencyConflictError{SagaID: id, Key: o.key, Differs: differs}
	}
	return id, nil
}

// created returns the saga.created of saga id, or nil if it has no log.
func (c *Client) created(ctx context.Context, id string) (*events.SagaCreated, error) {
	first, err := c.log.First(ctx, id)
	if err != nil || first == nil {
		return nil, err
	}
	m, err := sagalog.Decode(id, *first)
	if err != nil {
		return nil, err
	}
	created, ok := m.Events[0].Data.(*events.SagaCreated)
	if !ok {
		return nil, fmt.Errorf("saga %s: the log starts with %s, not saga.created", id, m.Events[0].Type())
	}
	return created, nil
}

// startCommand reads the start command stored at seq in the work stream:
// the earlier start that a duplicate one was deduplicated against.
func (c *Client) startCommand(ctx context.Context, seq uint64) (*events.SagaCreated, error) {
	st, err := c.js.Stream(ctx, c.ns.WorkStream())
	if err != nil {
		return nil, err
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("client: read the earlier start command (%s sequence %d): %w", c.ns.WorkStream(), seq, err)
	}
	ev, err := events.Decode(m.Data)
	if err != nil {
		return nil, fmt.Errorf("client: the earlier start command (%s sequence %d): %w", c.ns.WorkStream(), seq, err)
	}
	start, ok := ev.Data.(*events.StartSaga)
	if !ok {
		return nil, fmt.Errorf("client: %s sequence %d is a %s, not a start command", c.ns.WorkStream(), seq, ev.Type())
	}
	return &start.SagaCreated, nil
}

// command publishes a command about saga id to its partition.
func (c *Client) command(ctx context.Context, id, eventID string, data events.Data) error {
	_, err := c.commandTraced(ctx, id, eventID, "", data)
	return err
}

// directStartWait bounds how long Start waits for the partition's owner to
// answer a direct start before sending the start as a command. Either way
// the saga starts once: the command of a start that was in fact decided
// finds the saga there.
const directStartWait = 5 * time.Second

// startDirect asks the owner of the saga's partition to start it now
// (streams.StartSubject) and returns its answer: OK once the saga exists,
// Error when it refuses, neither when no coordinator answers in time or
// one says to retry (the caller then sends the command).
func (c *Client) startDirect(ctx context.Context, id, traceParent string, cmd *events.StartSaga) (streams.StartAnswer, error) {
	var a streams.StartAnswer
	b, err := c.encodeCommand(id, "start:"+id, traceParent, cmd)
	if err != nil {
		return a, err
	}
	m := nats.NewMsg(c.ns.StartSubject(streams.Partition(id, c.partitions)))
	m.Data = b
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	rctx, cancel := context.WithTimeout(ctx, directStartWait)
	defer cancel()
	reply, err := c.js.Conn().RequestMsgWithContext(rctx, m)
	if err != nil {
		if ctx.Err() != nil {
			return a, ctx.Err()
		}
		return a, nil // no responders, or no answer in time
	}
	if err := json.Unmarshal(reply.Data, &a); err != nil {
		return streams.StartAnswer{}, nil // not an answer jetsaga gives: the command path decides
	}
	return a, nil
}

// encodeCommand encodes a command about saga id as a CloudEvent within
// the work stream's message size limit.
func (c *Client) encodeCommand(id, eventID, traceParent string, data events.Data) ([]byte, error) {
	b, err := events.Encode(events.Event{ID: eventID, Source: "/jetsaga/client", SagaID: id, Time: time.Now().UTC(), TraceParent: traceParent, Data: data})
	if err != nil {
		return nil, err
	}
	if c.maxMsg > 0 && len(b) > int(c.maxMsg) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d (keep big data out of params and outputs)", ErrTooLarge, len(b), c.maxMsg)
	}
	return b, nil
}

func (c *Client) commandTraced(ctx context.Context, id, eventID, traceParent string, data events.Data) (*jetstream.PubAck, error) {
	b, err := c.encodeCommand(id, eventID, traceParent, data)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(c.ns.CommandSubject(streams.Partition(id, c.partitions)))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, eventID)
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	ack, err := c.js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("client: send %s for saga %s: %w", data.EventType(), id, err)
	}
	return ack, nil
}

func (c *Client) operatorCommand(ctx context.Context, id string, cmd events.OperatorCommand) error {
	if err := streams.ValidateSagaID(id); err != nil {
		return err
	}
	last, err := c.log.Last(ctx, id)
	if err != nil {
		return err
	}
	if last == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	cmd.Operator = c.operator
	return c.command(ctx, id, fmt.Sprintf("%s:%s:%s", cmd.Action, id, uuid.NewString()), &cmd)
}

// Abort asks a running saga to unwind.
func (c *Client) Abort(ctx context.Context, id, reason string) error {
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionAbort, Reason: reason})
}

// RetryUndo asks a stuck saga to run the failed undo of node again.
func (c *Client) RetryUndo(ctx context.Context, id, node, reason string) error {
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionRetry, Node: node, Reason: reason})
}

// Resolve declares the failed undo of node done by other means; reason is
// recorded in the log.
func (c *Client) Resolve(ctx context.Context, id, node, reason string) error {
	if reason == "" {
		return errors.New("client: resolve needs a reason")
	}
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionResolve, Node: node, Reason: reason})
}

// Retry asks a saga waiting for an operator to run its failed node again
// (or, in a stuck saga, a failed undo, as RetryUndo). params, if not nil,
// replace the node's params from this retry on.
func (c *Client) Retry(ctx context.Context, id, node, reason string, params json.RawMessage) error {
	if params != nil && !json.Valid(params) {
		return fmt.Errorf("client: retry of saga %s node %q: params are not JSON", id, node)
	}
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionRetry, Node: node, Reason: reason, Params: params})
}

// Skip declares the failed node of a saga waiting for an operator
// succeeded, with output (marshalled to JSON) as its output; reason is
// recorded in the log.
func (c *Client) Skip(ctx context.Context, id, node string, output any, reason string) error {
	if reason == "" {
		return errors.New("client: skip needs a reason")
	}
	b, err := json.Marshal(output)
	if err != nil {
		return fmt.Errorf("client: skip output: %w", err)
	}
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionSkip, Node: node, Reason: reason, Output: b})
}

// Pause holds a saga's new nodes back (actions and undos); requests
// already sent finish. Recorded in the saga's log.
func (c *Client) Pause(ctx context.Context, id, reason string) error {
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionPause, Reason: reason})
}

// Resume lets a paused saga go on.
func (c *Client) Resume(ctx context.Context, id, reason string) error {
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionResume, Reason: reason})
}

// Abandon ends a saga as it is.
func (c *Client) Abandon(ctx context.Context, id, reason string) error {
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionAbandon, Reason: reason})
}

// InjectFault sets the fault of one action node of a saga that has not
// finished, replacing the node's fault if it had one; a Fault naming only
// its node clears it. The fault is recorded in the saga's log with reason.
// It takes effect at the node's next action or undo request.
func (c *Client) InjectFault(ctx context.Context, id string, f events.Fault, reason string) error {
	s, err := c.Status(ctx, id)
	if err != nil {
		return err
	}
	if s.Finished() {
		return fmt.Errorf("client: saga %s has finished (%s): no fault can take effect", id, s.Status)
	}
	g, err := saga.Compile(s.Definition)
	if err != nil {
		return err
	}
	if err := machine.CheckFault(g, f); err != nil {
		return fmt.Errorf("client: saga %s: %w", id, err)
	}
	return c.operatorCommand(ctx, id, events.OperatorCommand{Action: events.ActionFault, Reason: reason, Fault: &f})
}

// Events returns a saga's log, decoded, with the stream sequence of the
// message each event came in.
func (c *Client) Events(ctx context.Context, id string) ([]LogEvent, error) {
	entries, err := c.read(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	msgs, err := sagalog.DecodeAll(ctx, c.defs, id, entries)
	var out []LogEvent
	for _, m := range msgs {
		out = appendEvents(out, m)
	}
	return out, err
}

// appendEvents appends the events of a log message to evs.
func appendEvents(evs []LogEvent, m sagalog.Message) []LogEvent {
	for _, ev := range m.Events {
		evs = append(evs, LogEvent{Seq: m.Seq, Message: m.N, Event: ev})
	}
	return evs
}

// LogEvent is an event of a saga's log.
type LogEvent struct {
	// Seq is the stream sequence of the stored message it came in (a
	// finished saga's rollup holds all its messages).
	Seq uint64
	// Message is the log message it came in: 1 for the saga's first.
	Message int
	events.Event
}

func (c *Client) read(ctx context.Context, id string, after uint64) ([]streams.Entry, error) {
	if err := streams.ValidateSagaID(id); err != nil {
		return nil, err
	}
	var entries []streams.Entry
	var err error
	if after == 0 {
		entries, err = c.log.Load(ctx, id) // live, or archived once finished
	} else {
		entries, err = c.log.Read(ctx, id, after)
	}
	if errors.Is(err, streams.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return entries, err
}

// Status folds a saga's log into its status.
func (c *Client) Status(ctx context.Context, id string) (*Saga, error) {
	evs, err := c.Events(ctx, id)
	if err != nil {
		return nil, err
	}
	return fold(id, evs)
}

func fold(id string, evs []LogEvent) (*Saga, error) {
	s := machine.New(id)
	for _, e := range evs {
		if err := s.Apply(e.Event); err != nil {
			return nil, err
		}
	}
	return view(s, evs), nil
}

// Wait returns the saga's status once it has finished, is stuck, or is
// waiting for an operator after a failure (StatusWaiting), or
// ctx's error. A stuck saga is at rest: every undo that could run has
// settled, its failed undos are all in the status, and nothing changes
// until an operator retries or resolves one, or abandons the saga.
func (c *Client) Wait(ctx context.Context, id string) (*Saga, error) {
	return c.WaitFor(ctx, id, func(s *Saga) bool {
		return s.Finished() || s.Status == StatusStuck || s.Status == StatusWaiting
	})
}

// WaitFor returns the saga's status once done reports true for it. It
// watches the saga's log subject and reads only what is new.
func (c *Client) WaitFor(ctx context.Context, id string, done func(*Saga) bool) (*Saga, error) {
	if err := streams.ValidateSagaID(id); err != nil {
		return nil, err
	}
	var evs []LogEvent
	var result *Saga
	_, err := sagalog.Follow(ctx, c.js.Conn(), c.log, c.defs, id, 0,
		func(m sagalog.Message) error {
			evs = appendEvents(evs, m)
			return nil
		},
		func(st *machine.State) bool {
			result = view(st, evs)
			return done(result)
		})
	if err != nil {
		return nil, err
	}
	return result, nil
}
