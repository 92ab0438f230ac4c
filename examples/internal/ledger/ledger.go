// Package ledger is the examples' stand-in for real systems (an airline, a
// cloud, a bank): records kept in a NATS KV bucket, so a test can check
// what an example's sagas did and that an unwound saga left no trace.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/streams"
)

// Ledger is a KV bucket of records, keyed by the idempotency key of the
// saga node that made them.
type Ledger struct {
	kv jetstream.KeyValue
}

// Open creates (or opens) the bucket.
func Open(ctx context.Context, js jetstream.JetStream, bucket string) (*Ledger, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1})
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", bucket, err)
	}
	return &Ledger{kv: kv}, nil
}

// key turns an idempotency key ("<saga id>:<node path>") into a KV key.
func key(idem string) string {
	return strings.NewReplacer(":", ".", "@", "_").Replace(idem)
}

// Add records v under the idempotency key, once: adding again returns the
// record already there. It is how an idempotent action creates things.
func (l *Ledger) Add(ctx context.Context, idem string, v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if _, err := l.kv.Create(ctx, key(idem), b); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, err := l.kv.Get(ctx, key(idem))
		if err != nil {
			return nil, err
		}
		return e.Value(), nil
	}
	return b, nil
}

// Remove deletes the record; removing what is not there is fine (undos
// must tolerate running twice, or for an action that never ran).
func (l *Ledger) Remove(ctx context.Context, idem string) error {
	err := l.kv.Purge(ctx, key(idem))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// Records lists the records of one saga (all sagas if sagaID is empty),
// by key.
func (l *Ledger) Records(ctx context.Context, sagaID string) (map[string]json.RawMessage, error) {
	filter := ">"
	if sagaID != "" {
		filter = sagaID + ".>"
	}
	lister, err := l.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return map[string]json.RawMessage{}, nil
		}
		return nil, err
	}
	keys, err := streams.Keys(ctx, lister)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for _, k := range keys {
		e, err := l.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[k] = e.Value()
	}
	return out, nil
}

// Read lists the records one saga left in bucket, decoded as T, by key.
func Read[T any](ctx context.Context, js jetstream.JetStream, bucket, sagaID string) (map[string]T, error) {
	l, err := Open(ctx, js, bucket)
	if err != nil {
		return nil, err
	}
	recs, err := l.Records(ctx, sagaID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(recs))
	for k, v := range recs {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, fmt.Errorf("ledger %s: record %s: %w", bucket, k, err)
		}
		out[k] = t
	}
	return out, nil
}

// State lists every record in bucket as view(record), sorted: what a test
// compares before and after a saga (sagatest's hooks). Views leave out
// what differs from run to run, such as refs made from saga ids. With
// reset, the bucket is emptied first.
func State[T any](ctx context.Context, js jetstream.JetStream, bucket string, reset bool, view func(T) string) ([]string, error) {
	l, err := Open(ctx, js, bucket)
	if err != nil {
		return nil, err
	}
	if reset {
		if err := l.clear(ctx); err != nil {
			return nil, err
		}
	}
	recs, err := Read[T](ctx, js, bucket, "")
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, r := range recs {
		out = append(out, view(r))
	}
	slices.Sort(out)
	return out, nil
}

// clear removes every record.
func (l *Ledger) clear(ctx context.Context) error {
	recs, err := l.Records(ctx, "")
	if err != nil {
		return err
	}
	for k := range recs {
		if err := l.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
	}
	return nil
}
