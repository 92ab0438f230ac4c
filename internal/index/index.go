// Package index keeps the saga index in the KV bucket jetsaga_sagas: a
// summary per saga (for listing and filtering), and a marker per saga in
// flight, by partition (for recovery).
//
// The index is derived from the logs and may lag them: the coordinator
// writes it after the log, and recovery rewrites it from the log. What
// recovery relies on: a saga's in-flight marker is written alongside its
// log's first append, and the start command is acknowledged only once
// both are durable (until then the start comes again, and a saga read
// afresh from its log is marked again); the marker is removed only after
// the log says the saga finished. So recovery never misses a saga in
// flight.
//
// Keys: "saga.<id>" → Summary (JSON); "inflight.<partition>.<id>" → empty.
// Removed markers are purged with a short marker TTL, so listing a
// partition's in-flight sagas costs what is in flight, not its history.
package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/streams"
)

// ErrNotFound is returned for a saga the index does not know.
var ErrNotFound = errors.New("index: saga not found")

// Summary describes a saga for listing.
type Summary struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Status         string            `json:"status"`
	Paused         bool              `json:"paused,omitempty"`
	Partition      int               `json:"partition"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Created        time.Time         `json:"created"`
	Updated        time.Time         `json:"updated"`
	// Node is the node that made the saga unwind or get stuck.
	Node string `json:"node,omitempty"`
}

// Index reads and writes the saga index.
type Index struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

// markerTTL is how long a purged in-flight marker lingers.
const markerTTL = time.Minute

// Open binds to the index bucket, which streams.Apply creates.
func Open(ctx context.Context, js jetstream.JetStream) (*Index, error) {
	kv, err := js.KeyValue(ctx, streams.SagaBucket)
	if err != nil {
		return nil, fmt.Errorf("index: open bucket %s: %w", streams.SagaBucket, err)
	}
	return &Index{kv: kv, js: js}, nil
}

func inflightKey(p int, id string) string { return "inflight." + strconv.Itoa(p) + "." + id }
func summaryKey(id string) string         { return "saga." + id }

// InFlight lists the sagas of partition p marked in flight.
func (ix *Index) InFlight(ctx context.Context, p int) ([]string, error) {
	prefix := "inflight." + strconv.Itoa(p) + "."
	lister, err := ix.kv.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("index: list partition %d: %w", p, err)
	}
	keys, err := streams.Keys(ctx, lister)
	if err != nil {
		return nil, fmt.Errorf("index: list partition %d: %w", p, err)
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, prefix))
	}
	return ids, nil
}

// The writes publish to the bucket's subjects with JetStream's async
// publish and await the acknowledgement (or ctx): over a connection that
// is reconnecting, or to a bucket electing a leader, they fail with the
// future or the deadline, and many can be in flight at once (a
// coordinator's hot path).

// MarkInFlight records that saga id of partition p is in flight.
func (ix *Index) MarkInFlight(ctx context.Context, p int, id string) error {
	if err := ix.publish(ctx, &nats.Msg{Subject: kvSubject(inflightKey(p, id))}); err != nil {
		return fmt.Errorf("index: mark saga %s in flight: %w", id, err)
	}
	return nil
}

// ClearInFlight removes saga id's in-flight marker.
func (ix *Index) ClearInFlight(ctx context.Context, p int, id string) error {
	m := nats.NewMsg(kvSubject(inflightKey(p, id)))
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.MsgTTLHeader, markerTTL.String())
	if err := ix.publish(ctx, m); err != nil {
		return fmt.Errorf("index: clear saga %s in flight: %w", id, err)
	}
	return nil
}

// Put writes a saga's summary. A ttl above zero makes it expire by itself
// after it (a finished saga's, at the end of its retention): a summary
// written late, after the saga's expiry removed it, does not outlive the
// saga.
func (ix *Index) Put(ctx context.Context, s Summary, ttl time.Duration) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	m := nats.NewMsg(kvSubject(summaryKey(s.ID)))
	m.Data = b
	if ttl > 0 {
		m.Header.Set(jetstream.MsgTTLHeader, max(ttl, time.Second).Round(time.Second).String())
	}
	if err := ix.publish(ctx, m); err != nil {
		return fmt.Errorf("index: put saga %s: %w", s.ID, err)
	}
	return nil
}

// publish stores m and waits for the acknowledgement or ctx.
func (ix *Index) publish(ctx context.Context, m *nats.Msg) error {
	f, err := ix.js.PublishMsgAsync(m, jetstream.WithStallWait(streams.StallWait))
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func kvSubject(key string) string { return "$KV." + streams.SagaBucket + "." + key }

// Forget removes a saga's summary (its log is gone).
func (ix *Index) Forget(ctx context.Context, id string) error {
	if err := ix.kv.Purge(ctx, summaryKey(id), jetstream.PurgeTTL(markerTTL)); err != nil {
		return fmt.Errorf("index: forget saga %s: %w", id, err)
	}
	return nil
}

// Get reads a saga's summary.
func (ix *Index) Get(ctx context.Context, id string) (Summary, error) {
	e, err := ix.kv.Get(ctx, summaryKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Summary{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Summary{}, fmt.Errorf("index: get saga %s: %w", id, err)
	}
	var s Summary
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return Summary{}, fmt.Errorf("index: saga %s has a bad summary: %w", id, err)
	}
	return s, nil
}

// All returns every saga's summary, calling keep to filter them.
func (ix *Index) All(ctx context.Context, keep func(Summary) bool) ([]Summary, error) {
	w, err := ix.kv.Watch(ctx, "saga.*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("index: list: %w", err)
	}
	defer w.Stop()
	var out []Summary
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return out, nil
			}
			if e == nil { // all current values delivered
				return out, nil
			}
			var s Summary
			if json.Unmarshal(e.Value(), &s) == nil && (keep == nil || keep(s)) {
				out = append(out, s)
			}
		}
	}
}
