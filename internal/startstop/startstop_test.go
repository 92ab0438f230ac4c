package startstop_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/startstop"
)

func TestStartStopRunsEachOnceAndAwaitsGoroutines(t *testing.T) {
	t.Parallel()
	var l startstop.Lifecycle
	var starts, stops atomic.Int32
	var exited atomic.Bool
	start := func(context.Context) error {
		starts.Add(1)
		l.Go(func(ctx context.Context) { <-ctx.Done(); exited.Store(true) })
		return nil
	}
	for range 2 {
		if err := l.Start(context.Background(), start); err != nil {
			t.Fatal(err)
		}
	}
	if !l.Running() || starts.Load() != 1 {
		t.Fatalf("running %v, starts %d", l.Running(), starts.Load())
	}
	stop := func(context.Context) {
		if exited.Load() {
			t.Error("goroutines were cancelled before the stop function ran")
		}
		stops.Add(1)
	}
	for range 2 {
		if err := l.Stop(context.Background(), stop); err != nil {
			t.Fatal(err)
		}
	}
	if !exited.Load() || stops.Load() != 1 || !l.Stopping() {
		t.Fatalf("exited %v, stops %d", exited.Load(), stops.Load())
	}
	select {
	case <-l.Stopped():
	default:
		t.Fatal("Stopped not closed")
	}
	if err := l.Start(context.Background(), start); !errors.Is(err, startstop.ErrStopped) {
		t.Fatalf("Start after Stop: %v", err)
	}
}

func TestStopAfterAFailedStartReturns(t *testing.T) {
	t.Parallel()
	var l startstop.Lifecycle
	var exited atomic.Bool
	boom := errors.New("boom")
	err := l.Start(context.Background(), func(context.Context) error {
		l.Go(func(ctx context.Context) { <-ctx.Done(); exited.Store(true) })
		return boom
	})
	if !errors.Is(err, boom) || !exited.Load() || l.Running() {
		t.Fatalf("err %v, goroutine ended %v, running %v", err, exited.Load(), l.Running())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Stop(ctx, func(context.Context) { t.Error("stop function of a component that never ran") }); err != nil {
		t.Fatal(err)
	}
}

// A Stop that comes while Start runs cancels it and waits; the pair leaves
// the component stopped, and a later Stop returns.
func TestStopDuringStartCancelsIt(t *testing.T) {
	t.Parallel()
	var l startstop.Lifecycle
	inStart := make(chan struct{})
	startErr := make(chan error, 1)
	go func() {
		startErr <- l.Start(context.Background(), func(ctx context.Context) error {
			close(inStart)
			<-ctx.Done() // a start that would hang without the cancel
			return ctx.Err()
		})
	}()
	<-inStart
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Stop(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-startErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Start: %v", err)
	}
	if err := l.Stop(ctx, nil); err != nil || l.Running() {
		t.Fatalf("second Stop: %v, running %v", err, l.Running())
	}
}

// Many Starts and Stops at once: no panic, no hang, and the end state is
// stopped with every goroutine ended (run with -race).
func TestConcurrentStartsAndStops(t *testing.T) {
	t.Parallel()
	for range 200 {
		var l startstop.Lifecycle
		var live atomic.Int32
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				if i%2 == 0 {
					_ = l.Start(context.Background(), func(context.Context) error {
						live.Add(1)
						l.Go(func(ctx context.Context) { <-ctx.Done(); live.Add(-1) })
						return nil
					})
				} else {
					_ = l.Stop(context.Background(), nil)
				}
			})
		}
		wg.Wait()
		if err := l.Stop(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if live.Load() != 0 {
			t.Fatalf("%d goroutines outlived Stop", live.Load())
		}
	}
}
