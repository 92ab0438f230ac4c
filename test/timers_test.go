package test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// A retry wait long enough to be a NATS message schedule: the schedule is
// stored in JETSAGA_TIMERS, fires into the partition's timer subject, and
// the coordinator starts the next attempt when it does.
func TestLongRetryWaitIsAMessageSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var attempts atomic.Int64
	startRaw(t, e.js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if attempts.Add(1) == 1 {
			return nil, &events.Error{Kind: events.ErrorTransient, Message: "busy"}, true
		}
		return succeedAll(req)
	})
	def := saga.New("later").Then(saga.Action("a", "later.a").
		Retry(saga.RetryPolicy{MaxAttempts: 2, InitialDelay: saga.Duration(6 * time.Second)})).MustBuild()
	ctx := ctxT(t)
	id, err := e.cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := e.wait(id)
	if s.Status != client.StatusSucceeded || attempts.Load() != 2 {
		t.Fatalf("status %s after %d attempts", s.Status, attempts.Load())
	}
	st, err := e.js.Stream(ctx, streams.TimerStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The schedule purged itself when it fired; the fired message remains
	// (with a TTL of an hour).
	if info.State.LastSeq < 2 {
		t.Fatalf("timer stream has seen %d messages, want the schedule and its firing", info.State.LastSeq)
	}
	a, _ := s.Node("a")
	if a.Attempt != 2 {
		t.Fatalf("attempt %d", a.Attempt)
	}
}
