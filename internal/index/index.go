// Package index keeps the index of sagas in flight in the KV bucket
// jetsaga_sagas: a marker per saga in flight, by partition (for recovery),
// whose value is the saga's summary (for listing and filtering). Finished
// sagas are listed from the archive (streams.Log.Archive), which holds
// each one's summary in a header.
//
// The index is derived from the logs and may lag them: the coordinator
// writes it after the log, and recovery rewrites it from the log. What
// recovery relies on: a saga's in-flight marker is written alongside its
// log's first append, and the start command is acknowledged only once
// both are durable (until then the start comes again, and a saga read
// afresh from its log is marked again); the marker is removed only after
// the saga is finished and archived. So recovery never misses a saga in
// flight, and a saga whose marker is gone is in the archive.
//
// Keys: "inflight.<partition>.<id>" → Summary (JSON). Removed markers are
// purged with a short marker TTL, so listing a partition's in-flight sagas
// costs what is in flight, not its history. Releases before the archive
// also kept "saga.<id>" → Summary for every saga; Forget removes one.
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
	// Node is the node an operator looks at: the failed undo of a stuck
	// saga, the failed node a waiting saga waits on, else the node whose
	// failure made the saga unwind.
	Node string `json:"node,omitempty"`
	// Definition is the reference of the saga's stored definition (its
	// version).
	Definition string `json:"definition,omitempty"`
}

// Index reads and writes the saga index.
type Index struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
	ns streams.Namespace
}

// markerTTL is how long a purged in-flight marker lingers.
const markerTTL = time.Minute

// Open binds to namespace ns's index bucket, which streams.Apply creates.
func Open(ctx context.Context, js jetstream.JetStream, ns streams.Namespace) (*Index, error) {
	kv, err := js.KeyValue(ctx, ns.SagaBucket())
	if err != nil {
		return nil, fmt.Errorf("index: open bucket %s: %w", ns.SagaBucket(), err)
	}
	return &Index{kv: kv, js: js, ns: ns}, nil
}

func inflightKey(p int, id string) string { return "inflight." + strconv.Itoa(p) + "." + id }
func summaryKey(id string) string         { return "saga." + id }

// InFlight lists the sagas of partition p marked in flight, with the
// summaries their markers hold (only ID and Partition set for a marker
// whose value is not a summary: one an earlier release wrote).
func (ix *Index) InFlight(ctx context.Context, p int) ([]Summary, error) {
	prefix := "inflight." + strconv.Itoa(p) + "."
	w, err := ix.kv.Watch(ctx, prefix+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("index: list partition %d: %w", p, err)
	}
	defer w.Stop() //nolint:errcheck // nothing to do about it
	var out []Summary
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("index: list partition %d: %w", p, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil { // all current values delivered
				return out, nil
			}
			id := strings.TrimPrefix(e.Key(), prefix)
			var s Summary
			if json.Unmarshal(e.Value(), &s) != nil || s.ID != id {
				s = Summary{ID: id, Partition: p}
			}
			out = append(out, s)
		}
	}
}

// The writes publish to the bucket's subjects with JetStream's async
// publish and await the acknowledgement (or ctx): over a connection that
// is reconnecting, or to a bucket electing a leader, they fail with the
// future or the deadline, and many can be in flight at once (a
// coordinator's hot path).

// MarkInFlight records that saga s.ID of partition s.Partition is in
// flight, with its summary (written again whenever the summary changes).
func (ix *Index) MarkInFlight(ctx context.Context, s Summary) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := ix.publish(ctx, &nats.Msg{Subject: ix.kvSubject(inflightKey(s.Partition, s.ID)), Data: b}); err != nil {
		return fmt.Errorf("index: mark saga %s in flight: %w", s.ID, err)
	}
	return nil
}

// ClearInFlight removes saga id's in-flight marker.
func (ix *Index) ClearInFlight(ctx context.Context, p int, id string) error {
	m := nats.NewMsg(ix.kvSubject(inflightKey(p, id)))
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.MsgTTLHeader, markerTTL.String())
	if err := ix.publish(ctx, m); err != nil {
		return fmt.Errorf("index: clear saga %s in flight: %w", id, err)
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

func (ix *Index) kvSubject(key string) string { return "$KV." + ix.ns.SagaBucket() + "." + key }

// Forget removes a saga's summary as releases before the archive kept it
// (an expiry timer they armed fired).
func (ix *Index) Forget(ctx context.Context, id string) error {
	if err := ix.kv.Purge(ctx, summaryKey(id), jetstream.PurgeTTL(markerTTL)); err != nil {
		return fmt.Errorf("index: forget saga %s: %w", id, err)
	}
	return nil
}

// Get reads the summary of saga id, in flight in partition p.
func (ix *Index) Get(ctx context.Context, p int, id string) (Summary, error) {
	e, err := ix.kv.Get(ctx, inflightKey(p, id))
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

// All returns the summary of every saga in flight, calling keep to filter
// them.
func (ix *Index) All(ctx context.Context, keep func(Summary) bool) ([]Summary, error) {
	w, err := ix.kv.Watch(ctx, "inflight.*.*", jetstream.IgnoreDeletes())
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
