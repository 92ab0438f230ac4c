package participant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/barrier"
)

// errCorrupt is wrapped when a barrier record does not decode.
var errCorrupt = errors.New("corrupt barrier record")

// records reads and writes the barrier's records in the bucket (the rules
// are in internal/barrier).
type records struct {
	kv jetstream.KeyValue
}

// get reads a record; nil with revision 0 when the key is absent.
func (b *records) get(ctx context.Context, key string) (*barrier.Record, uint64, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read barrier key %s: %w", key, err)
	}
	var r barrier.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.State == "" {
		return nil, e.Revision(), fmt.Errorf("%w %s (revision %d): %q", errCorrupt, key, e.Revision(), e.Value())
	}
	return &r, e.Revision(), nil
}

// put writes r if the key is still at revision rev (0: the key must be
// absent) and returns the new revision. A lost race is errConflict.
func (b *records) put(ctx context.Context, key string, r *barrier.Record, rev uint64) (uint64, error) {
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
func (b *records) del(ctx context.Context, key string, rev uint64) error {
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
	rec *barrier.Record
	ttl time.Duration
}

// renew extends the lock by ttl from now.
func (l *lease) renew(ctx context.Context, b *records) error {
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
