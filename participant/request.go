package participant

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jetsaga/jetsaga/events"
)

// Handler runs an action or its undo for one request. Its output (for a do
// handler) is encoded as JSON and becomes the node's output, visible to the
// node's descendants; an undo handler's output is ignored.
//
// The error decides the reply: nil is success; Permanent(err) fails the
// node (the saga unwinds); RetryAfter(d, err) and any other error are
// transient (retried per the node's policy). An error wrapping
// ErrUnknownNode or ErrDecode is permanent too, since every attempt gets
// the same params and outputs. A panic is a transient failure.
//
// ctx carries the request (FromContext, Lookup, InProgress) and is
// cancelled at the request's deadline, when the participant's Stop runs out
// of time (cause ErrStopping) and when the barrier lock is lost (cause
// ErrLockLost). A handler must return promptly when it is.
type Handler func(ctx context.Context, req *Request) (output any, err error)

// Request is what a handler is asked to do: one attempt of a node's action
// (Op do) or undo (Op undo) in one saga.
type Request struct {
	// ID is the request's event id, <saga id>:<node>:<op>:<attempt>.
	ID string
	// SagaID is the saga's id, a lowercase UUID.
	SagaID string
	// Node is the node's path ("vm/disk" in subsaga vm).
	Node string
	// Action is the action's name, Undo its undo's (may be empty).
	Action, Undo string
	// Op is events.OpDo or events.OpUndo.
	Op events.Op
	// Attempt counts the attempts of this op of this node, from 1.
	Attempt int
	// IdempotencyKey is the same for every attempt of the node's action
	// and undo, "<saga id>:<node>". Handlers pass it on to the systems they
	// change, so that running twice has the effect of running once.
	IdempotencyKey string
	// Params are the params of the node's scope, as JSON (null for none).
	Params json.RawMessage
	// Outputs are the outputs of the ancestors the node may look up, by
	// node name.
	Outputs map[string]json.RawMessage
	// Skipped names the ancestors it may look up that were skipped (their
	// condition was false): they have no output.
	Skipped []string
	// Output is, for an undo, the output of the action being undone; JSON
	// null when the action's outcome is unknown (it may never have run).
	Output json.RawMessage
	// Deadline is when the coordinator stops waiting for this attempt
	// (zero if none); the handler's context ends then.
	Deadline time.Time
	// TraceParent is the W3C trace context the request carried, if any.
	TraceParent string
}

// DecodeParams decodes the request's params into v. The error wraps
// ErrDecode.
func (r *Request) DecodeParams(v any) error {
	if err := json.Unmarshal(nullIfEmpty(r.Params), v); err != nil {
		return fmt.Errorf("%w params of node %q into %T: %w", ErrDecode, r.Node, v, err)
	}
	return nil
}

// DecodeOutput decodes, for an undo, the output of the action being undone
// into v (which is left as is when the output is null). The error wraps
// ErrDecode.
func (r *Request) DecodeOutput(v any) error {
	if err := json.Unmarshal(nullIfEmpty(r.Output), v); err != nil {
		return fmt.Errorf("%w output of node %q into %T: %w", ErrDecode, r.Node, v, err)
	}
	return nil
}

// Lookup decodes the output of node, an ancestor of the request's node, into
// v. A node the request carries no output for is an *UnknownNodeError
// (matching ErrUnknownNode) naming the nodes that are available; an output
// that does not decode into v wraps ErrDecode.
//
// An ancestor that was skipped (its `when` was false) has no output: its
// lookup is an error matching ErrSkipped.
func (r *Request) Lookup(node string, v any) error {
	out, ok := r.Outputs[node]
	if !ok && slices.Contains(r.Skipped, node) {
		return fmt.Errorf("%w: node %q looked up %q, which was skipped (its condition was false) and has no output", ErrSkipped, r.Node, node)
	}
	if !ok {
		return &UnknownNodeError{Node: node, RequestNode: r.Node, Available: slices.Sorted(maps.Keys(r.Outputs))}
	}
	if err := json.Unmarshal(nullIfEmpty(out), v); err != nil {
		return fmt.Errorf("%w output of node %q into %T: %w", ErrDecode, node, v, err)
	}
	return nil
}

func nullIfEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// inflight is what a handler's context carries.
type inflight struct {
	req *Request
	// progress tells JetStream the request is still being worked on.
	progress func() error
}

type ctxKey struct{}

func withInflight(ctx context.Context, f *inflight) context.Context {
	return context.WithValue(ctx, ctxKey{}, f)
}

func inflightFrom(ctx context.Context) (*inflight, bool) {
	f, ok := ctx.Value(ctxKey{}).(*inflight)
	return f, ok
}

// FromContext returns the request a handler's context carries.
func FromContext(ctx context.Context) (*Request, bool) {
	f, ok := inflightFrom(ctx)
	if !ok {
		return nil, false
	}
	return f.req, true
}

// Lookup decodes the output of node, an ancestor of the node of the request
// ctx carries, into v; see Request.Lookup. Outside a handler's context it
// returns ErrNoRequest.
func Lookup(ctx context.Context, node string, v any) error {
	r, ok := FromContext(ctx)
	if !ok {
		return fmt.Errorf("%w: Lookup(%q) outside a handler", ErrNoRequest, node)
	}
	return r.Lookup(node, v)
}

// InProgress tells JetStream that the request ctx carries is still being
// worked on, so it is not delivered again when the consumer's ack wait
// passes. The participant already does this every third of the ack wait
// while a handler runs; call it to be sure before a long blocking step.
// Outside a handler's context it returns ErrNoRequest.
func InProgress(ctx context.Context) error {
	f, ok := inflightFrom(ctx)
	if !ok {
		return fmt.Errorf("%w: InProgress outside a handler", ErrNoRequest)
	}
	return f.progress()
}
