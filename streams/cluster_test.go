package streams_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// TestCluster runs the log's guarantees on a 3-node cluster with R3
// streams, where the server checks duplicates before expected sequences
// and reports conflicts with in-flight writes as 10164.
func TestCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := natstest.RunCluster(t, 3)
	_, js := natstest.Connect(t, c.URL())
	ctx := testCtx(t)
	cfg := streams.Config{Replicas: 3}
	if err := streams.Apply(ctx, js, cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := streams.Apply(ctx, js, cfg); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	if err := streams.Verify(ctx, js, cfg); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	log := streams.NewLog(js)

	t.Run("retry is idempotent", func(t *testing.T) {
		t.Parallel()
		id := uuid.NewString()
		data := []byte(`{"event":"created"}`)
		seq1, err := log.Append(ctx, id, 0, data)
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := log.Append(ctx, id, 0, data); err != nil || seq != seq1 {
			t.Fatalf("retry = %d, %v; want %d", seq, err, seq1)
		}
		seq2, err := log.Append(ctx, id, seq1, []byte(`{"event":"next"}`))
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := log.Append(ctx, id, 0, data); err != nil || seq != seq1 {
			t.Fatalf("late retry = %d, %v; want %d", seq, err, seq1)
		}
		if _, err := log.Append(ctx, id, 0, []byte(`{"event":"other"}`)); !errors.Is(err, streams.ErrConflict) {
			t.Fatalf("different data at position 0 = %v, want ErrConflict", err)
		}
		if last, err := log.Last(ctx, id); err != nil || last != seq2 {
			t.Fatalf("Last = %d, %v; want %d", last, err, seq2)
		}
	})

	t.Run("concurrent identical appends", func(t *testing.T) {
		t.Parallel()
		concurrentIdenticalAppends(t, log, 20)
	})

	t.Run("create exactly once while a write is in flight", func(t *testing.T) {
		t.Parallel()
		// Two creates of one saga at once: one wins; the other loses with
		// 10071 if the winner was stored first, or 10164 if it was still
		// being replicated. Both must be a *ConflictError; rounds go on
		// until the 10164 case has happened.
		codes := map[jetstream.ErrorCode]int{}
		for round := 0; round < 200 && codes[jetstream.JSErrCodeStreamWrongLastSequenceConstant] == 0; round++ {
			id := uuid.NewString()
			var errs [2]error
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() {
					_, errs[i] = log.Append(ctx, id, 0, fmt.Appendf(nil, `{"writer":%d}`, i))
				})
			}
			wg.Wait()
			lost := 0
			for _, err := range errs {
				if err == nil {
					continue
				}
				var conflict *streams.ConflictError
				var apiErr *jetstream.APIError
				if !errors.As(err, &conflict) || !errors.As(err, &apiErr) {
					t.Fatalf("round %d: %v, want a *ConflictError from the server", round, err)
				}
				codes[apiErr.ErrorCode]++
				lost++
			}
			if lost != 1 {
				t.Fatalf("round %d: %d creates lost (%v), want exactly 1", round, lost, errs)
			}
		}
		t.Logf("conflict codes: %v", codes)
		if codes[jetstream.JSErrCodeStreamWrongLastSequenceConstant] == 0 {
			t.Fatalf("no conflict came back as 10164 in 200 rounds (codes %v); the in-flight path was not exercised", codes)
		}
	})

	t.Run("racing writers", func(t *testing.T) {
		t.Parallel()
		raceWriters(t, log, uuid.NewString(), 6, 60)
	})
}
