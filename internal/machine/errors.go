package machine

import (
	"errors"
	"fmt"

	"github.com/jetsaga/jetsaga/events"
)

var (
	// ErrIllegal is matched by every *IllegalEventError.
	ErrIllegal = errors.New("machine: illegal event")
	// ErrRejected is matched by every *RejectedError.
	ErrRejected = errors.New("machine: input rejected")
	// ErrIdempotencyConflict is matched by the *RejectedError of a start of
	// a saga that exists with another definition or params.
	ErrIdempotencyConflict = errors.New("machine: idempotency conflict")
	// ErrDuplicateSignal is matched by the *RejectedError of a signal
	// whose id the node has taken already: a repeat, to be answered as
	// done.
	ErrDuplicateSignal = errors.New("machine: duplicate signal")
)

// IllegalEventError says why an event cannot be applied to a saga's state.
// The state is unchanged.
type IllegalEventError struct {
	SagaID    string
	EventID   string
	Event     events.Type
	Node      string    // "" for saga-level events
	NodeState NodeState // the node's state when the event came
	SagaState Status
	Reason    string
}

func (e *IllegalEventError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("saga %s: event %s (%s) is illegal while the saga is %s: %s",
			e.SagaID, e.EventID, e.Event, e.SagaState, e.Reason)
	}
	if e.NodeState == "" {
		return fmt.Sprintf("saga %s: event %s (%s) names unknown node %q (saga %s): %s",
			e.SagaID, e.EventID, e.Event, e.Node, e.SagaState, e.Reason)
	}
	return fmt.Sprintf("saga %s: event %s (%s) is illegal for node %q in state %s (saga %s): %s",
		e.SagaID, e.EventID, e.Event, e.Node, e.NodeState, e.SagaState, e.Reason)
}

// Is makes errors.Is(err, ErrIllegal) true.
func (e *IllegalEventError) Is(target error) bool { return target == ErrIllegal }

// RejectedError says why an input (a reply, timer or operator command) was
// ignored: it is stale, duplicated, forged, or not allowed now. The saga is
// unaffected.
type RejectedError struct {
	SagaID string
	Node   string
	Reason string
	// Err, if set, is a sentinel saying more (ErrIdempotencyConflict).
	Err error
}

// Unwrap returns Err.
func (e *RejectedError) Unwrap() error { return e.Err }

func (e *RejectedError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("saga %s: rejected: %s", e.SagaID, e.Reason)
	}
	return fmt.Sprintf("saga %s: node %q: rejected: %s", e.SagaID, e.Node, e.Reason)
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }
