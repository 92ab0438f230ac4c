// Package barrier is the participants' idempotency barrier as pure
// functions: the state of a node's record, what to do with a request given
// it (Decide), and the record that takes the lock (Acquired) and the one
// that settles a run (Settled). The participant SDK keeps the records in a
// KV bucket; the coordinator's simulation keeps them in memory, so both run
// the same rules.
package barrier

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/streams"
)

// The idempotency barrier keeps one Record per (saga, node) in the KV
// bucket streams.BarrierBucket, shared by the node's do and undo. Every
// change is a compare-and-set on that key (Create for a new key, Update or
// Delete with the revision read), so two workers can never both move it
// from one state: one wins, the other reads again and decides again. A
// stale read (a replica lagging) therefore costs a round, never a wrong
// transition. The decisions are pure functions (decide, acquired, settled)
// so they can be tested as a table.

// State is the state of a node's barrier record.
type State string

const (
	// StateRunning: a worker holds the lock and runs the action.
	StateRunning State = "running"
	// StateDone: the action succeeded; Output is its output.
	StateDone State = "done"
	// StateFailed: the action failed permanently (and so changed nothing);
	// Error is what was replied.
	StateFailed State = "failed"
	// StateRetry: attempt Attempt of the action failed transiently (and so
	// changed nothing); Error is what was replied. A repeat of that attempt
	// or an earlier one (a redelivery whose first answer was replied) gets
	// the same answer without running: run now, it could take effect after
	// the coordinator stopped retrying the node — the saga unwinding, or
	// retries exhausted — leaving an effect nobody undoes. A later attempt
	// runs.
	StateRetry State = "retry"
	// StateUnknown: a run was interrupted (its worker's lock expired) and
	// no later run settled it, so the action may have taken effect; nobody
	// holds the lock.
	StateUnknown State = "unknown"
	// StateUndoing: a worker holds the lock and runs the undo; or, with
	// the lock expired, an undo was interrupted.
	StateUndoing State = "undoing"
	// StateUndone: the undo succeeded.
	StateUndone State = "undone"
	// StateTombstone: an undo came before the action ever ran; the action
	// is refused from now on.
	StateTombstone State = "tombstone"
)

// Record is the JSON value of a barrier key.
type Record struct {
	State State `json:"state"`
	// Owner and LockUntil are the lock, in states running and undoing:
	// the worker holding it, and when it expires if not renewed.
	Owner     string    `json:"owner,omitempty"`
	LockUntil time.Time `json:"lock_until,omitzero"`
	// Interrupted: an earlier run of the action was interrupted, so it may
	// have taken effect even if the present run fails.
	Interrupted bool `json:"interrupted,omitempty"`
	// RequestID is the request that last wrote the record; Attempt, its
	// attempt (states running, retry and failed; a failed record of an
	// earlier release has none).
	RequestID string `json:"request_id"`
	Attempt   int    `json:"attempt,omitempty"`
	// Output is the action's output (states done, undoing, undone).
	Output json.RawMessage `json:"output,omitempty"`
	// Error is the action's error (states failed and retry).
	Error   *events.Error `json:"error,omitempty"`
	Updated time.Time     `json:"updated"`
}

// Key is the key of a node's record, in the key space of the action whose
// request it answers: the action's token (streams.ActionToken), the saga
// id and the node path in unpadded base64url (node paths may hold
// characters KV keys do not allow: keys allow only [-/_=.a-zA-Z0-9]),
// joined by dots. Each action's records are under "<token>.>", so NATS
// permissions can keep a participant to its own actions' records.
func Key(action, sagaID, node string) string {
	return streams.ActionToken(action) + "." + LegacyKey(sagaID, node)
}

// LegacyKey is where releases before per-action key spaces kept a node's
// record: the saga id and the node path in unpadded base64url.
func LegacyKey(sagaID, node string) string {
	return sagaID + "." + base64.RawURLEncoding.EncodeToString([]byte(node))
}

func (r *Record) Locked(now time.Time) bool { return r.LockUntil.After(now) }

// Verdict is what to do with a request, given the barrier record.
type Verdict int

const (
	// VerdictRun: take the lock (state running for a do, undoing for an
	// undo) and run the handler.
	VerdictRun Verdict = iota + 1
	// VerdictWait: another worker holds the lock; let the request come
	// back later.
	VerdictWait
	// VerdictReplyOutput: the action is done; reply its recorded output
	// without running it.
	VerdictReplyOutput
	// VerdictReplyError: the action failed permanently, or this attempt
	// failed transiently; reply the recorded error without running it.
	VerdictReplyError
	// VerdictRefuse: an action request after the node's undo started (or
	// after a tombstone): refuse it permanently, so it never hangs around.
	VerdictRefuse
	// VerdictTombstone: an undo for an action that never ran (or failed
	// and so changed nothing): Record a tombstone and reply OK without
	// running the undo.
	VerdictTombstone
	// VerdictUndone: the undo was done already; reply OK.
	VerdictUndone
	// VerdictCorrupt: a Record this version does not understand; leave it
	// alone and let the request come back.
	VerdictCorrupt
)

// decide is the barrier's state machine: what to do with a request for op
// and attempt, given the node's Record (nil if there is none) at time now.
func Decide(op events.Op, attempt int, rec *Record, now time.Time) Verdict {
	if op == events.OpDo {
		if rec == nil {
			return VerdictRun
		}
		switch rec.State {
		case StateRunning:
			if rec.Locked(now) {
				return VerdictWait
			}
			return VerdictRun // its worker died: take over
		case StateUnknown:
			return VerdictRun
		case StateDone:
			return VerdictReplyOutput
		case StateFailed:
			if rec.Attempt > 0 && attempt > rec.Attempt {
				// The coordinator never retries a node that failed for
				// good: a later attempt is an operator's retry (a saga
				// waiting for an operator). The failure changed nothing,
				// so the action runs again.
				return VerdictRun
			}
			return VerdictReplyError
		case StateRetry:
			if attempt <= rec.Attempt {
				return VerdictReplyError // answered already
			}
			return VerdictRun
		case StateUndoing, StateUndone, StateTombstone:
			return VerdictRefuse
		}
		return VerdictCorrupt
	}
	if rec == nil {
		return VerdictTombstone
	}
	switch rec.State {
	case StateFailed, StateRetry:
		return VerdictTombstone
	case StateRunning, StateUndoing:
		if rec.Locked(now) {
			return VerdictWait
		}
		return VerdictRun
	case StateDone, StateUnknown:
		return VerdictRun
	case StateUndone, StateTombstone:
		return VerdictUndone
	}
	return VerdictCorrupt
}

// acquired is the Record that takes the lock for a VerdictRun of op and
// attempt over prior (nil if none).
func Acquired(op events.Op, attempt int, prior *Record, owner, requestID string, lockUntil, now time.Time) *Record {
	r := &Record{Owner: owner, LockUntil: lockUntil, RequestID: requestID, Updated: now}
	if op == events.OpDo {
		r.State, r.Attempt = StateRunning, attempt
		// Taking over a running or unknown record: an earlier run may
		// have had its effect. (A retry or failed record's attempt changed
		// nothing.)
		r.Interrupted = prior != nil && prior.State != StateRetry && prior.State != StateFailed
		return r
	}
	r.State = StateUndoing
	if prior != nil {
		r.Output = prior.Output
		r.Interrupted = prior.Interrupted || prior.State == StateRunning || prior.State == StateUnknown
	}
	return r
}

// Outcome is how a handler's run ended, as far as the barrier cares.
type Outcome int

const (
	OutcomeOK Outcome = iota + 1
	OutcomePermanent
	// OutcomeRetry: a transient error, replied.
	OutcomeRetry
	// OutcomeStopped: the run was cut short by Stop; nothing is replied
	// and the request comes again.
	OutcomeStopped
)

// settled is the Record that releases the lock held (taken over prior)
// once the run of op ended with kind; nil means delete the key.
func Settled(op events.Op, prior, held *Record, kind Outcome, output json.RawMessage, errv *events.Error, requestID string, now time.Time) *Record {
	r := &Record{RequestID: requestID, Updated: now, Interrupted: held.Interrupted}
	if op == events.OpDo {
		switch kind {
		case OutcomeOK:
			r.State, r.Output, r.Interrupted = StateDone, output, false
		case OutcomePermanent:
			// Actions are atomic: a permanent failure changed nothing,
			// and an idempotent handler that found an earlier run's
			// effect would have succeeded. Recording it makes a repeat
			// give the same answer instead of maybe succeeding after the
			// coordinator recorded the failure (an effect nobody undoes).
			r.State, r.Error, r.Interrupted, r.Attempt = StateFailed, errv, false, held.Attempt
		case OutcomeRetry:
			if held.Interrupted {
				r.State = StateUnknown
				break
			}
			// Nothing happened, and the coordinator is told so: the same
			// attempt must keep that answer.
			r.State, r.Error, r.Attempt = StateRetry, errv, held.Attempt
		default:
			if !held.Interrupted {
				return nil // nothing happened and nothing replied: as if it never ran
			}
			r.State = StateUnknown
		}
		return r
	}
	if kind == OutcomeOK {
		r.State, r.Output, r.Interrupted = StateUndone, held.Output, false
		return r
	}
	// The undo failed: put back what was there, without a lock, so the
	// next undo attempt can run.
	switch prior.State {
	case StateRunning, StateUnknown:
		r.State = StateUnknown
	default: // done, undoing
		r.State, r.Output = prior.State, prior.Output
	}
	return r
}
