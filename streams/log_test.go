package streams_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

func TestAppendCreatesExactlyOnce(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	ctx := testCtx(t)
	id := uuid.NewString()

	seq, err := log.Append(ctx, id, 0, []byte(`{"writer":"a"}`))
	if err != nil {
		t.Fatalf("first create: %v", err)
	}
	_, err = log.Append(ctx, id, 0, []byte(`{"writer":"b"}`))
	var conflict *streams.ConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("second create = %v, want a *ConflictError", err)
	}
	if conflict.SagaID != id || conflict.Expected != 0 {
		t.Errorf("conflict = %+v, want saga %s expected 0", conflict, id)
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Errorf("conflict does not unwrap to the server's 10071: %v", err)
	}
	entries, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Seq != seq || string(entries[0].Data) != `{"writer":"a"}` {
		t.Fatalf("log = %+v, want only the first writer's entry at %d", entries, seq)
	}
}

func TestAppendRetryIsIdempotent(t *testing.T) {
	t.Parallel()
	js, log := setup(t)
	ctx := testCtx(t)
	id := uuid.NewString()
	first := []byte(`{"event":"created"}`)

	seq1, err := log.Append(ctx, id, 0, first)
	if err != nil {
		t.Fatal(err)
	}
	// The answer to the first attempt was "lost": retry the same append.
	seq, err := log.Append(ctx, id, 0, first)
	if err != nil || seq != seq1 {
		t.Fatalf("retry = %d, %v; want %d, nil", seq, err, seq1)
	}
	assertStoredMsgs(t, js, 1)

	seq2, err := log.Append(ctx, id, seq1, []byte(`{"event":"next"}`))
	if err != nil {
		t.Fatal(err)
	}
	// A late retry of the first append, after the log moved on, still
	// finds its own message.
	seq, err = log.Append(ctx, id, 0, first)
	if err != nil || seq != seq1 {
		t.Fatalf("late retry = %d, %v; want %d, nil", seq, err, seq1)
	}
	// Different bytes at a taken position are a conflict, not a duplicate.
	if _, err := log.Append(ctx, id, 0, []byte(`{"event":"other"}`)); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("different data at position 0 = %v, want ErrConflict", err)
	}
	// So are the same bytes at a position taken by someone else.
	if _, err := log.Append(ctx, id, seq1, first); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("first's data at position %d = %v, want ErrConflict", seq1, err)
	}
	assertStoredMsgs(t, js, 2)
	last, err := log.Last(ctx, id)
	if err != nil || last != seq2 {
		t.Fatalf("Last = %d, %v; want %d", last, err, seq2)
	}
}

func TestConcurrentIdenticalAppends(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	concurrentIdenticalAppends(t, log, 20)
}

// concurrentIdenticalAppends has two goroutines make the same append at
// once, rounds times: both must get the same sequence.
func concurrentIdenticalAppends(t *testing.T, log *streams.Log, rounds int) {
	ctx := testCtx(t)
	id := uuid.NewString()
	var last uint64
	for round := range rounds {
		data := fmt.Appendf(nil, `{"round":%d}`, round)
		var seqs [2]uint64
		var errs [2]error
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { seqs[i], errs[i] = log.Append(ctx, id, last, data) })
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil || seqs[0] != seqs[1] {
			t.Fatalf("round %d: identical appends = (%d, %v) and (%d, %v), want the same sequence twice", round, seqs[0], errs[0], seqs[1], errs[1])
		}
		last = seqs[0]
	}
}

func TestRacingWriters(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	res := raceWriters(t, log, uuid.NewString(), 8, 200)
	if res.conflicts == 0 {
		t.Error("8 writers made 200 appends without a single conflict; the race was not exercised")
	}
}

type raceResult struct {
	conflicts int
	codes     map[jetstream.ErrorCode]int // server error codes behind the conflicts
}

// raceWriters has writers goroutines append to one saga until it holds
// total entries, each writer re-reading the last sequence after losing a
// race. It then checks that exactly one writer won each position: the
// successful appends form one chain (each expected the previous one's
// sequence), and the log holds exactly those entries, in order.
func raceWriters(t *testing.T, log *streams.Log, id string, writers, total int) raceResult {
	t.Helper()
	ctx := testCtx(t)
	type win struct {
		expected, seq uint64
		data          []byte
	}
	var (
		mu   sync.Mutex
		wins []win
		res  = raceResult{codes: map[jetstream.ErrorCode]int{}}
	)
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(wins) >= total
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var last uint64
			for n := 0; !done(); n++ {
				data := fmt.Appendf(nil, `{"writer":%d,"n":%d,"after":%d}`, w, n, last)
				seq, err := log.Append(ctx, id, last, data)
				if err == nil {
					mu.Lock()
					wins = append(wins, win{last, seq, data})
					mu.Unlock()
					last = seq
					continue
				}
				var conflict *streams.ConflictError
				if !errors.As(err, &conflict) {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				res.conflicts++
				var apiErr *jetstream.APIError
				if errors.As(err, &apiErr) {
					res.codes[apiErr.ErrorCode]++
				}
				mu.Unlock()
				if last, err = log.Last(ctx, id); err != nil {
					t.Errorf("writer %d: Last: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	slices.SortFunc(wins, func(a, b win) int { return cmp.Compare(a.seq, b.seq) })
	var prev uint64
	for i, w := range wins {
		if w.expected != prev {
			t.Fatalf("append %d at seq %d expected %d, but the previous append is %d: two writers won one position or a position was skipped", i, w.seq, w.expected, prev)
		}
		prev = w.seq
	}
	// On a replicated stream a direct get may be served by a follower
	// that is a little behind.
	var entries []streams.Entry
	natstest.Eventually(t, 5*time.Second, func() error {
		var err error
		entries, err = log.Read(ctx, id, 0)
		if err == nil && len(entries) != len(wins) {
			err = fmt.Errorf("log has %d entries, %d appends succeeded", len(entries), len(wins))
		}
		return err
	})
	for i, e := range entries {
		if e.Seq != wins[i].seq || !bytes.Equal(e.Data, wins[i].data) {
			t.Fatalf("entry %d = seq %d %s, want seq %d %s", i, e.Seq, e.Data, wins[i].seq, wins[i].data)
		}
	}
	t.Logf("%d writers, %d appends, %d conflicts (server codes %v)", writers, len(wins), res.conflicts, res.codes)
	return res
}

func TestReadInOrderAcrossBatches(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	ctx := testCtx(t)
	a, b := uuid.NewString(), uuid.NewString()
	start := time.Now()

	// 600 entries (more than two batches of 256), interleaved with another
	// saga's so that a saga's sequences are not consecutive.
	var lastA, lastB uint64
	var want []uint64
	for i := range 600 {
		seq, err := log.Append(ctx, a, lastA, fmt.Appendf(nil, `{"i":%d}`, i))
		if err != nil {
			t.Fatal(err)
		}
		lastA = seq
		want = append(want, seq)
		if i%3 == 0 {
			if lastB, err = log.Append(ctx, b, lastB, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
	}

	entries, err := log.Read(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 600 {
		t.Fatalf("Read returned %d entries, want 600", len(entries))
	}
	for i, e := range entries {
		if e.Seq != want[i] || string(e.Data) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("entry %d = seq %d %s, want seq %d {\"i\":%d}", i, e.Seq, e.Data, want[i], i)
		}
		if e.Time.Before(start.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("entry %d time %v is not about now", i, e.Time)
		}
	}

	// From the middle: everything after the 300th entry.
	rest, err := log.Read(ctx, a, want[299])
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 300 || rest[0].Seq != want[300] || rest[299].Seq != want[599] {
		t.Fatalf("Read after %d returned %d entries (%v...), want the last 300", want[299], len(rest), rest[:min(3, len(rest))])
	}
	// Past the end: nothing, and no error.
	if rest, err := log.Read(ctx, a, lastA); err != nil || len(rest) != 0 {
		t.Fatalf("Read past the end = %d entries, %v; want none", len(rest), err)
	}
	if other, err := log.Read(ctx, b, 0); err != nil || len(other) != 200 {
		t.Fatalf("other saga: %d entries, %v; want 200", len(other), err)
	}
}

// Large messages make the server cut batches by bytes rather than count.
func TestReadLargeMessages(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	ctx := testCtx(t)
	id := uuid.NewString()
	var last uint64
	const n, size = 40, 300 << 10 // 12 MB in all, over the 8 MiB page bound
	for i := range n {
		data := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		var err error
		if last, err = log.Append(ctx, id, last, data); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("Read returned %d entries, want %d", len(entries), n)
	}
	for i, e := range entries {
		if len(e.Data) != size || e.Data[0] != byte('a'+i%26) {
			t.Fatalf("entry %d has %d bytes starting %q", i, len(e.Data), e.Data[:1])
		}
	}
}

func TestReadUnknownSaga(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	ctx := testCtx(t)
	id := uuid.NewString()

	_, err := log.Read(ctx, id, 0)
	var notFound *streams.NotFoundError
	if !errors.As(err, &notFound) || !errors.Is(err, streams.ErrNotFound) || notFound.SagaID != id {
		t.Fatalf("Read of unknown saga = %v, want a *NotFoundError for %s", err, id)
	}
	entries, err := log.Read(ctx, id, 5)
	if err != nil || len(entries) != 0 {
		t.Fatalf("Read of unknown saga after 5 = %v, %v; want no entries, no error", entries, err)
	}
	if last, err := log.Last(ctx, id); err != nil || last != 0 {
		t.Fatalf("Last of unknown saga = %d, %v; want 0, nil", last, err)
	}
}

func TestLogRejectsInvalidSagaIDs(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	ctx := testCtx(t)
	bad := "not-a-uuid"
	if _, err := log.Append(ctx, bad, 0, nil); !errors.Is(err, streams.ErrInvalidSagaID) {
		t.Errorf("Append = %v, want ErrInvalidSagaID", err)
	}
	if _, err := log.Read(ctx, bad, 0); !errors.Is(err, streams.ErrInvalidSagaID) {
		t.Errorf("Read = %v, want ErrInvalidSagaID", err)
	}
	if _, err := log.Last(ctx, bad); !errors.Is(err, streams.ErrInvalidSagaID) {
		t.Errorf("Last = %v, want ErrInvalidSagaID", err)
	}
}

func TestReadWithoutTopology(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	_, err := streams.NewLog(js).Read(ctx, uuid.NewString(), 0)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("Read without a log stream = %v, want no responders", err)
	}
}

func assertStoredMsgs(t *testing.T, js jetstream.JetStream, want uint64) {
	t.Helper()
	s, err := js.Stream(testCtx(t), streams.LogStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != want {
		t.Fatalf("%s holds %d messages, want %d", streams.LogStream, got, want)
	}
}
