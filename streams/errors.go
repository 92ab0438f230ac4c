package streams

import (
	"errors"
	"fmt"
)

var (
	// ErrConflict is matched (errors.Is) by every *ConflictError: an append
	// lost the optimistic-concurrency check because the saga's log had moved
	// past the position the writer expected.
	ErrConflict = errors.New("streams: append conflict")

	// ErrNotFound is matched by every *NotFoundError: a saga has no log.
	ErrNotFound = errors.New("streams: saga log not found")

	// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("streams: invalid config")

	// ErrInvalidSagaID is wrapped by ValidateSagaID's errors.
	ErrInvalidSagaID = errors.New("streams: invalid saga id")

	// ErrInvalidActionName is wrapped by ValidateActionName's errors.
	ErrInvalidActionName = errors.New("streams: invalid action name")

	// ErrMissing is matched by every *MissingError: a stream or bucket of
	// the topology does not exist.
	ErrMissing = errors.New("streams: resource missing")

	// ErrIncompatible is matched by every *IncompatibleError: a stream or
	// bucket exists with a setting jetsaga cannot work with.
	ErrIncompatible = errors.New("streams: resource incompatible")
)

// ConflictError is returned by Log.Append when the saga's log does not end
// at the expected sequence: another writer appended first (or the writer's
// view of the log is stale). The writer must re-read the log before trying
// again; retrying the same append cannot succeed.
type ConflictError struct {
	SagaID string
	// Expected is the last sequence the writer expected the log to have.
	Expected uint64

	err error // the server's answer, for errors.As(*jetstream.APIError)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("streams: append conflict on saga %s: its log no longer ends at sequence %d", e.SagaID, e.Expected)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Unwrap returns the server's error, if known.
func (e *ConflictError) Unwrap() error { return e.err }

// NotFoundError is returned by Log.Read when a saga has no log at all.
type NotFoundError struct {
	SagaID string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("streams: saga %s has no log", e.SagaID)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// MissingError names a stream or bucket of the topology that does not exist.
type MissingError struct {
	// Kind is "stream" or "bucket".
	Kind string
	Name string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("streams: %s %s does not exist", e.Kind, e.Name)
}

// Is makes errors.Is(err, ErrMissing) true.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// IncompatibleError names a stream or bucket that exists with a setting
// jetsaga cannot work with. Apply never changes such a resource: an operator
// must fix or remove it.
type IncompatibleError struct {
	// Kind is "stream" or "bucket".
	Kind string
	Name string
	// Field is the setting, as named in jetstream.StreamConfig
	// ("Subjects", "Retention") or "Metadata[key]".
	Field string
	// Want is what jetsaga needs, Have what the server has.
	Want, Have string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("streams: %s %s exists with incompatible %s: have %s, need %s", e.Kind, e.Name, e.Field, e.Have, e.Want)
}

// Is makes errors.Is(err, ErrIncompatible) true.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }
