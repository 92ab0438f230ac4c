package streams_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// A rollup replaces the saga's log with one message, keeps the append's
// fencing, and leaves the subject once its TTL is over.
func TestAppendRollupReplacesTheLogThenExpires(t *testing.T) {
	t.Parallel()
	js, log := setup(t)
	ctx := testCtx(t)
	id := uuid.NewString()
	seq, err := log.Append(ctx, id, 0, []byte(`[2,"a"]`))
	if err != nil {
		t.Fatal(err)
	}
	if seq, err = log.Append(ctx, id, seq, []byte(`[2,"b"]`)); err != nil {
		t.Fatal(err)
	}
	// Fenced like any append.
	if _, err := log.AppendRollup(ctx, id, seq-1, []byte(`[3,[2,"a"],[2,"x"]]`), streams.Rollup{TTL: time.Second}); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("a rollup at a stale position: %v, want a conflict", err)
	}
	rollup := []byte(`[3,[2,"a"],[2,"b"],[2,"c"]]`)
	last, err := log.AppendRollup(ctx, id, seq, rollup, streams.Rollup{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Retried after a lost answer: found at its position, not written twice.
	if again, err := log.AppendRollup(ctx, id, seq, rollup, streams.Rollup{TTL: time.Second}); err != nil || again != last {
		t.Fatalf("retried rollup: %d, %v; want %d", again, err, last)
	}
	entries, err := log.Read(ctx, id, 0)
	if err != nil || len(entries) != 1 || entries[0].Seq != last || string(entries[0].Data) != string(rollup) {
		t.Fatalf("log after the rollup: %+v, %v", entries, err)
	}
	// A start at position 0 still finds the saga while the rollup lives.
	if _, err := log.Append(ctx, id, 0, []byte(`[2,"again"]`)); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("a second start within the window: %v", err)
	}
	natstest.Eventually(t, 15*time.Second, func() error {
		if _, err := log.Read(ctx, id, 0); !errors.Is(err, streams.ErrNotFound) {
			return fmt.Errorf("the rollup did not expire: %v", err)
		}
		return nil
	})
	s, err := js.Stream(ctx, streams.LogStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(streams.LogSubject(id)))
	if err != nil || len(info.State.Subjects) != 0 {
		t.Fatalf("the subject is still tracked: %v, %v", info.State.Subjects, err)
	}
}

// Archived sagas are found by id among others in their bucket, whether
// the id carries a time (version 7) or not.
func TestArchiveFindsSagas(t *testing.T) {
	t.Parallel()
	_, log := setup(t)
	ctx := testCtx(t)
	v7 := func() string { return uuid.Must(uuid.NewV7()).String() }
	ids := []string{uuid.NewString(), v7(), uuid.NewSHA1(uuid.NameSpaceURL, []byte("key")).String(), v7()}
	// Fill one id's bucket with others first, so the lookup has to scan.
	target := ids[1]
	others := 0
	for i := 0; others < 300; i++ {
		other := uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.Itoa(i))).String()
		if streams.ArchiveSubject(other) != streams.ArchiveSubject(target) {
			continue
		}
		if err := log.Archive(ctx, other, []byte(`[3,[2,"other"]]`), nil); err != nil {
			t.Fatal(err)
		}
		others++
	}
	for _, id := range ids {
		if err := log.Archive(ctx, id, []byte(`[3,[2,"`+id+`"]]`), []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
		// A second copy (a finish handled twice): the same bytes.
		if err := log.Archive(ctx, id, []byte(`[3,[2,"`+id+`"]]`), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		e, err := log.Archived(ctx, id)
		if err != nil || string(e.Data) != `[3,[2,"`+id+`"]]` {
			t.Fatalf("archived %s: %+v, %v", id, e, err)
		}
		entries, err := log.Load(ctx, id)
		if err != nil || len(entries) != 1 || entries[0].Seq != e.Seq {
			t.Fatalf("load %s: %+v, %v", id, entries, err)
		}
	}
	// An id derived from a key names a second saga once the first left
	// its dedupe window: the newest copy is the one returned.
	key := uuid.NewSHA1(uuid.NameSpaceURL, []byte("key again")).String()
	for _, run := range []string{"first", "second"} {
		if err := log.Archive(ctx, key, []byte(`[3,[2,"`+run+`"]]`), nil); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := log.Archived(ctx, key); err != nil || string(e.Data) != `[3,[2,"second"]]` {
		t.Fatalf("a reused id: %+v, %v", e, err)
	}
	// A version 7 id made by a client whose clock is an hour ahead: not
	// where its time says, found in the whole bucket.
	ahead := uuid.Must(uuid.NewV7()) // then its 48-bit millisecond time, an hour on
	ms := uint64(time.Now().Add(time.Hour).UnixMilli())
	for i := range 6 {
		ahead[i] = byte(ms >> (40 - 8*i))
	}
	if err := log.Archive(ctx, ahead.String(), []byte(`[3,[2,"ahead"]]`), nil); err != nil {
		t.Fatal(err)
	}
	if e, err := log.Archived(ctx, ahead.String()); err != nil || string(e.Data) != `[3,[2,"ahead"]]` {
		t.Fatalf("a saga whose id's clock was ahead: %+v, %v", e, err)
	}
	missing := v7()
	if _, err := log.Archived(ctx, missing); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("a saga never archived: %v", err)
	}
	if _, err := log.Load(ctx, uuid.NewString()); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("load of an unknown saga: %v", err)
	}
}

// A log stream made by an earlier release, without rollups and message
// TTLs, gets them from Apply; nothing else changes.
func TestApplyTurnsOnRollupsOnAnEarlierLogStream(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streams.LogStream, Subjects: []string{"jetsaga.log.*"},
		AllowDirect: true, DenyDelete: true, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, streams.LogStream)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if !c.AllowRollup || !c.AllowMsgTTL || c.MaxAge != time.Hour {
		t.Fatalf("after Apply: rollup %v, TTL %v, MaxAge %s", c.AllowRollup, c.AllowMsgTTL, c.MaxAge)
	}
}

// Logs made and dropped on one connection share one subscription for
// their reads' answers.
func TestLogsShareTheirConnectionsReplies(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	before := nc.NumSubscriptions()
	for range 50 {
		if _, err := streams.NewLog(js).Load(ctx, uuid.NewString()); !errors.Is(err, streams.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if n := nc.NumSubscriptions() - before; n != 1 {
		t.Fatalf("50 Logs left %d subscriptions, want 1", n)
	}
}
