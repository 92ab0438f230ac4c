// Package startstop is the one lifecycle of jetsaga's long-running
// components: the coordinator, its lease keeper and (in time) every other
// service that starts goroutines.
//
// A Lifecycle runs a component's start and stop functions so that:
//
//   - Start and Stop are idempotent and safe to call concurrently: one
//     runs at a time, and a Stop that arrives during a Start first cancels
//     the Start's context, then waits for it to return;
//   - Stop after a failed Start (or with no Start at all) returns at once:
//     a failed Start has cancelled and awaited whatever it had launched;
//   - every goroutine is started with Go and awaited by Stop, which
//     cancels their context after the component's own stop function (its
//     drain) has run.
//
// The model is river's startstop package; the states are new → starting →
// running → stopping → stopped, and a failed Start returns to new.
package startstop

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStopped is returned by Start once Stop has been called.
var ErrStopped = errors.New("startstop: stopped")

type state int32

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateStopping
	stateStopped
)

// Lifecycle is the start/stop state of one component. The zero value is
// ready to use; a Lifecycle must not be copied after first use.
type Lifecycle struct {
	once    sync.Once
	turn    chan struct{} // held by the Start or Stop in progress
	stopped chan struct{} // closed when the state becomes stopped
	state   atomic.Int32

	mu     sync.Mutex
	abort  context.CancelFunc // cancels the Start in progress
	ctx    context.Context    // the running context, for goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *Lifecycle) init() {
	l.turn = make(chan struct{}, 1)
	l.stopped = make(chan struct{})
	l.ctx, l.cancel = context.WithCancel(context.Background())
}

// take waits for the turn to start or stop, or for ctx.
func (l *Lifecycle) take(ctx context.Context) error {
	l.once.Do(l.init)
	select {
	case l.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Lifecycle) release() { <-l.turn }

// Start runs start, unless the component is running (nil) or has been
// stopped (ErrStopped). start gets a context that Stop cancels if it comes
// while start runs; goroutines it launches with Go get the running
// context instead. If start fails, those goroutines are cancelled and
// awaited, and the component is new again: Start may be called again.
func (l *Lifecycle) Start(ctx context.Context, start func(ctx context.Context) error) error {
	if err := l.take(ctx); err != nil {
		return err
	}
	defer l.release()
	switch state(l.state.Load()) {
	case stateRunning:
		return nil
	case stateStopping, stateStopped:
		return ErrStopped
	}
	sctx, abort := context.WithCancel(ctx)
	defer abort()
	l.mu.Lock()
	l.abort = abort
	l.ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.mu.Unlock()
	l.state.Store(int32(stateStarting))
	err := start(sctx)
	l.mu.Lock()
	l.abort = nil
	l.mu.Unlock()
	if err != nil {
		l.cancel()
		l.wg.Wait()
		l.state.Store(int32(stateNew))
		return err
	}
	l.state.Store(int32(stateRunning))
	return nil
}

// Stop stops the component: it cancels a Start in progress and waits for
// it, runs stop (the component's drain; nil for none) if the component
// was running, then cancels the running context and waits for every
// goroutine started with Go, or for ctx. Stop is idempotent; once it has
// been called, Start returns ErrStopped.
func (l *Lifecycle) Stop(ctx context.Context, stop func(ctx context.Context)) error {
	l.once.Do(l.init)
	l.mu.Lock()
	if l.abort != nil {
		l.abort()
	}
	l.mu.Unlock()
	if err := l.take(ctx); err != nil {
		return err
	}
	defer l.release()
	switch state(l.state.Load()) {
	case stateNew:
		l.state.Store(int32(stateStopped))
		close(l.stopped)
		return nil
	case stateStopped:
		return nil
	}
	l.state.Store(int32(stateStopping))
	if stop != nil {
		stop(ctx)
	}
	l.Cancel()
	err := l.Wait(ctx)
	l.state.Store(int32(stateStopped))
	close(l.stopped)
	return err
}

// Go runs f in a goroutine that Stop (or a failed Start) waits for. f's
// context is cancelled when Stop has run the component's stop function.
func (l *Lifecycle) Go(f func(ctx context.Context)) {
	l.once.Do(l.init)
	l.mu.Lock()
	ctx := l.ctx
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		f(ctx)
	}()
}

// Context is the running context: cancelled by Stop after the stop
// function, and by a failed Start.
func (l *Lifecycle) Context() context.Context {
	l.once.Do(l.init)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctx
}

// Cancel cancels the running context now; for a stop function that must
// end the goroutines before its own last steps.
func (l *Lifecycle) Cancel() {
	l.once.Do(l.init)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancel()
}

// Wait waits for every goroutine started with Go, or for ctx.
func (l *Lifecycle) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Running reports whether Start has succeeded and Stop not begun.
func (l *Lifecycle) Running() bool { return state(l.state.Load()) == stateRunning }

// Stopping reports whether Stop has begun (or ended).
func (l *Lifecycle) Stopping() bool {
	s := state(l.state.Load())
	return s == stateStopping || s == stateStopped
}

// Stopped is closed once Stop has ended.
func (l *Lifecycle) Stopped() <-chan struct{} {
	l.once.Do(l.init)
	return l.stopped
}
