package participant

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
)

// The idempotency barrier keeps one record per (saga, node) in the KV
// bucket streams.BarrierBucket, shared by the node's do and undo. Every
// change is a compare-and-set on that key (Create for a new key, Update or
// Delete with the revision read), so two workers can never both move it
// from one state: one wins, the other reads again and decides again. A
// stale read (a replica lagging) therefore costs a round, never a wrong
// transition. The decisions are pure functions (decide, acquired, settled)
// so they can be tested as a table.

// barrierState is the state of a node's barrier record.
type barrierState string

const (
	// stateRunning: a worker holds the lock and runs the action.
	stateRunning barrierState = "running"
	// stateDone: the action succeeded; Output is its output.
	stateDone barrierState = "done"
	// stateFailed: the action failed permanently (and so changed nothing);
	// Error is what was replied.
	stateFailed barrierState = "failed"
	// stateRetry: attempt Attempt of the action failed transiently (and so
	// changed nothing); Error is what was replied. A repeat of that attempt
	// or an earlier one (a redelivery whose first answer was replied) gets
	// the same answer without running: run now, it could take effect after
	// the coordinator stopped retrying the node — the saga unwinding, or
	// retries exhausted — leaving an effect nobody undoes. A later attempt
	// runs.
	stateRetry barrierState = "retry"
	// stateUnknown: a run was interrupted (its worker's lock expired) and
	// no later run settled it, so the action may have taken effect; nobody
	// holds the lock.
	stateUnknown barrierState = "unknown"
	// stateUndoing: a worker holds the lock and runs the undo; or, with
	// the lock expired, an undo was interrupted.
	stateUndoing barrierState = "undoing"
	// stateUndone: the undo succeeded.
	stateUndone barrierState = "undone"
	// stateTombstone: an undo came before the action ever ran; the action
	// is refused from now on.
	stateTombstone barrierState = "tombstone"
)

// record is the JSON value of a barrier key.
type record struct {
	State barrierState `json:"state"`
	// Owner and LockUntil are the lock, in states running and undoing:
	// the worker holding it, and when it expires if not renewed.
	Owner     string    `json:"owner,omitempty"`
	LockUntil time.Time `json:"lock_until,omitzero"`
	// Interrupted: an earlier run of the action was interrupted, so it may
	// have taken effect even if the present run fails.
	Interrupted bool `json:"interrupted,omitempty"`
	// RequestID is the request that last wrote the record; Attempt, its
	// attempt (states running and retry).
	RequestID string `json:"request_id"`
	Attempt   int    `json:"attempt,omitempty"`
	// Output is the action's output (states done, undoing, undone).
	Output json.RawMessage `json:"output,omitempty"`
	// Error is the action's error (states failed and retry).
	Error   *events.Error `json:"error,omitempty"`
	Updated time.Time     `json:"updated"`
}

// barrierKey is the key of a node's record: the saga id, a dot, and the
// node path in unpadded base64url, since node paths may hold characters KV
// keys do not allow (keys allow only [-/_=.a-zA-Z0-9]).
func barrierKey(sagaID, node string) string {
	return sagaID + "." + base64.RawURLEncoding.EncodeToString([]byte(node))
}

func (r *record) locked(now time.Time) bool { return r.LockUntil.After(now) }

// verdict is what to do with a request, given the barrier record.
type verdict int

const (
	// verdictRun: take the lock (state running for a do, undoing for an
	// undo) and run the handler.
	verdictRun verdict = iota + 1
	// verdictWait: another worker holds the lock; let the request come
	// back later.
	verdictWait
	// verdictReplyOutput: the action is done; reply its recorded output
	// without running it.
	verdictReplyOutput
	// verdictReplyError: the action failed permanently, or this attempt
	// failed transiently; reply the recorded error without running it.
	verdictReplyError
	// verdictRefuse: an action request after the node's undo started (or
	// after a tombstone): refuse it permanently, so it never hangs around.
	verdictRefuse
	// verdictTombstone: an undo for an action that never ran (or failed
	// and so changed nothing): record a tombstone and reply OK without
	// running the undo.
	verdictTombstone
	// verdictUndone: the undo was done already; reply OK.
	verdictUndone
	// verdictCorrupt: a record this version does not understand; leave it
	// alone and let the request come back.
	verdictCorrupt
)

// decide is the barrier's state machine: what to do with a request for op
// and attempt, given the node's record (nil if there is none) at time now.
func decide(op events.Op, attempt int, rec *record, now time.Time) verdict {
	if op == events.OpDo {
		if rec == nil {
			return verdictRun
		}
		switch rec.State {
		case stateRunning:
			if rec.locked(now) {
				return verdictWait
			}
			return verdictRun // its worker died: take over
		case stateUnknown:
			return verdictRun
		case stateDone:
			return verdictReplyOutput
		case stateFailed:
			return verdictReplyError
		case stateRetry:
			if attempt <= rec.Attempt {
				return verdictReplyError // answered already
			}
			return verdictRun
		case stateUndoing, stateUndone, stateTombstone:
			return verdictRefuse
		}
		return verdictCorrupt
	}
	if rec == nil {
		return verdictTombstone
	}
	switch rec.State {
	case stateFailed, stateRetry:
		return verdictTombstone
	case stateRunning, stateUndoing:
		if rec.locked(now) {
			return verdictWait
		}
		return verdictRun
	case stateDone, stateUnknown:
		return verdictRun
	case stateUndone, stateTombstone:
		return verdictUndone
	}
	return verdictCorrupt
}

// acquired is the record that takes the lock for a verdictRun of op and
// attempt over prior (nil if none).
func acquired(op events.Op, attempt int, prior *record, owner, requestID string, lockUntil, now time.Time) *record {
	r := &record{Owner: owner, LockUntil: lockUntil, RequestID: requestID, Updated: now}
	if op == events.OpDo {
		r.State, r.Attempt = stateRunning, attempt
		// Taking over a running or unknown record: an earlier run may
		// have had its effect. (A retry record's attempt changed nothing.)
		r.Interrupted = prior != nil && prior.State != stateRetry
		return r
	}
	r.State = stateUndoing
	if prior != nil {
		r.Output = prior.Output
		r.Interrupted = prior.Interrupted || prior.State == stateRunning || prior.State == stateUnknown
	}
	return r
}

// outcomeKind is how a handler's run ended, as far as the barrier cares.
type outcomeKind int

const (
	outcomeOK outcomeKind = iota + 1
	outcomePermanent
	// outcomeRetry: a transient error, replied.
	outcomeRetry
	// outcomeStopped: the run was cut short by Stop; nothing is replied
	// and the request comes again.
	outcomeStopped
)

// settled is the record that releases the lock held (taken over prior)
// once the run of op ended with kind; nil means delete the key.
func settled(op events.Op, prior, held *record, kind outcomeKind, output json.RawMessage, errv *events.Error, requestID string, now time.Time) *record {
	r := &record{RequestID: requestID, Updated: now, Interrupted: held.Interrupted}
	if op == events.OpDo {
		switch kind {
		case outcomeOK:
			r.State, r.Output, r.Interrupted = stateDone, output, false
		case outcomePermanent:
			// Actions are atomic: a permanent failure changed nothing,
			// and an idempotent handler that found an earlier run's
			// effect would have succeeded. Recording it makes a repeat
			// give the same answer instead of maybe succeeding after the
			// coordinator recorded the failure (an effect nobody undoes).
			r.State, r.Error, r.Interrupted = stateFailed, errv, false
		case outcomeRetry:
			if held.Interrupted {
				r.State = stateUnknown
				break
			}
			// Nothing happened, and the coordinator is told so: the same
			// attempt must keep that answer.
			r.State, r.Error, r.Attempt = stateRetry, errv, held.Attempt
		default:
			if !held.Interrupted {
				return nil // nothing happened and nothing replied: as if it never ran
			}
			r.State = stateUnknown
		}
		return r
	}
	if kind == outcomeOK {
		r.State, r.Output, r.Interrupted = stateUndone, held.Output, false
		return r
	}
	// The undo failed: put back what was there, without a lock, so the
	// next undo attempt can run.
	switch prior.State {
	case stateRunning, stateUnknown:
		r.State = stateUnknown
	default: // done, undoing
		r.State, r.Output = prior.State, prior.Output
	}
	return r
}

// errCorrupt is wrapped when a barrier record does not decode.
var errCorrupt = errors.New("corrupt barrier record")

// barrier reads and writes records in the bucket.
type barrier struct {
	kv jetstream.KeyValue
}

// get reads a record; nil with revision 0 when the key is absent.
func (b *barrier) get(ctx context.Context, key string) (*record, uint64, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read barrier key %s: %w", key, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.State == "" {
		return nil, e.Revision(), fmt.Errorf("%w %s (revision %d): %q", errCorrupt, key, e.Revision(), e.Value())
	}
	return &r, e.Revision(), nil
}

// put writes r if the key is still at revision rev (0: the key must be
// absent) and returns the new revision. A lost race is errConflict.
func (b *barrier) put(ctx context.Context, key string, r *record, rev uint64) (uint64, error) {
	v, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		rev, err = b.kv.Create(ctx, key, v)
	} else {
		rev, err = b.kv.Update(ctx, key, v, rev)
	}
	return rev, casError(key, err)
}

// del deletes the key if it is still at revision rev.
func (b *barrier) del(ctx context.Context, key string, rev uint64) error {
	return casError(key, b.kv.Delete(ctx, key, jetstream.LastRevision(rev)))
}

// errConflict is wrapped when a compare-and-set lost to another writer.
var errConflict = errors.New("barrier key changed meanwhile")

func casError(key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %s: %w", errConflict, key, err)
	}
	return fmt.Errorf("write barrier key %s: %w", key, err)
}

// lease is a lock held on a key: the record written and its revision.
type lease struct {
	key string
	rev uint64
	rec *record
	ttl time.Duration
}

// renew extends the lock by ttl from now.
func (l *lease) renew(ctx context.Context, b *barrier) error {
	next := *l.rec
	next.LockUntil = time.Now().Add(l.ttl)
	next.Updated = time.Now()
	rev, err := b.put(ctx, l.key, &next, l.rev)
	if err != nil {
		return err
	}
	l.rev, l.rec = rev, &next
	return nil
}
