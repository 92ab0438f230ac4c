package participant

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrInvalidConfig is wrapped by every problem New finds in a Config.
	ErrInvalidConfig = errors.New("participant: invalid config")

	// ErrInvalidRegistration is wrapped by Register's errors about its
	// arguments: a bad action name, a nil do handler, an action registered
	// twice.
	ErrInvalidRegistration = errors.New("participant: invalid registration")

	// ErrNoActions is returned by Start when no action was registered.
	ErrNoActions = errors.New("participant: no actions registered")

	// ErrStarted is returned by Register after Start.
	ErrStarted = errors.New("participant: already started")

	// ErrStopped is returned by Start after Stop: a participant is not
	// restarted; make a new one.
	ErrStopped = errors.New("participant: stopped")

	// ErrNoRequest is returned by Lookup and InProgress when ctx is not
	// (derived from) the context a handler was called with.
	ErrNoRequest = errors.New("participant: context carries no request")

	// ErrUnknownNode is matched by every *UnknownNodeError: a lookup of a
	// node whose output the request does not carry.
	ErrUnknownNode = errors.New("participant: node not in the request's outputs")
	// ErrSkipped: Lookup of an ancestor that was skipped (its condition
	// was false): it never ran and has no output.
	ErrSkipped = errors.New("participant: node was skipped")

	// ErrDecode is wrapped when a request's params or a node's output do
	// not decode into the value given.
	ErrDecode = errors.New("participant: cannot decode")

	// ErrLockLost is the cause (context.Cause) of a handler's context
	// being cancelled because its barrier lock expired without renewal
	// (NATS unreachable for longer than Config.LockTTL): another worker
	// may be running the same action now.
	ErrLockLost = errors.New("participant: barrier lock lost")

	// ErrStopping is the cause of a handler's context being cancelled
	// because Stop's context ended before the handler finished.
	ErrStopping = errors.New("participant: stopping")

	// ErrPermanent is matched by every *PermanentError.
	ErrPermanent = errors.New("participant: permanent failure")
)

// PermanentError is a handler's failure that retrying will not fix: the
// node fails and the saga unwinds. Make one with Permanent.
type PermanentError struct {
	Err error
}

// Permanent marks err as a permanent failure: the reply has error kind
// "permanent", the node fails and the saga unwinds. As with every failure,
// the action must have changed nothing. err may be nil.
func Permanent(err error) error { return &PermanentError{Err: err} }

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "permanent failure"
	}
	return e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPermanent) true.
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }

// RetryAfterError is a transient failure with a hint: try again no sooner
// than Delay. Make one with RetryAfter.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// RetryAfter marks err as a transient failure that should not be retried
// before d: the reply has error kind "transient" and retry_after d. The
// coordinator still applies the node's retry policy (attempts, and a delay
// of at least d). err may be nil.
func RetryAfter(d time.Duration, err error) error { return &RetryAfterError{Delay: d, Err: err} }

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry after %s", e.Delay)
	}
	return e.Err.Error()
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// UnknownNodeError is returned by Lookup for a node whose output the
// request does not carry: the name is wrong, the node is not an ancestor
// of the requesting node, or the definition's reads leave it out.
type UnknownNodeError struct {
	// Node is the node looked up.
	Node string
	// RequestNode is the node the request is for.
	RequestNode string
	// Available are the nodes whose outputs the request carries, sorted.
	Available []string
}

func (e *UnknownNodeError) Error() string {
	avail := "none"
	if len(e.Available) > 0 {
		avail = `"` + strings.Join(e.Available, `", "`) + `"`
	}
	return fmt.Sprintf("participant: node %q looked up %q, whose output it does not have (not a node name, not an ancestor, or not in its reads); outputs available: %s",
		e.RequestNode, e.Node, avail)
}

// Is makes errors.Is(err, ErrUnknownNode) true.
func (e *UnknownNodeError) Is(target error) bool { return target == ErrUnknownNode }

// panicError is a handler's panic, reported as a transient failure.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.value) }
