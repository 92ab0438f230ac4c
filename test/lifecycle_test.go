package test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// returnsWithin fails the test if f has not returned after d: the bugs
// these tests guard against are hangs.
func returnsWithin(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

// A coordinator whose credentials lack the lease bucket cannot send its
// first heartbeat: Start must fail and return, not wait for a lease loop
// that never started (issue 12, §3).
func TestStartFailsAndReturnsWithoutLeasePermissions(t *testing.T) {
	t.Parallel()
	u := securedUser{name: "coord", role: streams.RoleCoordinator, drop: []string{"$KV." + streams.LeaseBucket + ".>"}}
	url := runSecuredServer(t, []securedUser{u})
	js, _ := connectAs(t, url, u)
	c, err := coordinator.New(js, coordinator.Config{Name: "c", Topology: testTopo(), Logger: testLogger(t), RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	returnsWithin(t, 60*time.Second, "Start", func() {
		if err := c.Start(context.Background()); err == nil {
			t.Error("Start succeeded without permission to the lease bucket")
		}
	})
	returnsWithin(t, 60*time.Second, "Stop after a failed Start", func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// Start and Stop called at once, many times: no panic (a channel closed
// twice), no hang, and the coordinator ends stopped (issue 12, §3).
func TestConcurrentStartAndStop(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	// The topology exists first: a Start cancelled while it creates a
	// stream leaves the server creating it as the test ends, and the
	// server then leaks the stream's goroutines when shut down.
	if err := streams.Apply(ctxT(t), js, testTopo()); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c, err := coordinator.New(js, coordinator.Config{Name: "c", Topology: testTopo()})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = c.Start(context.Background()) })
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Millisecond) // spread where Stop lands in Start, not a synchronisation
			_ = c.Stop(context.Background())
		})
		returnsWithin(t, 60*time.Second, "Start and Stop", wg.Wait)
		returnsWithin(t, 60*time.Second, "a last Stop", func() {
			if err := c.Stop(context.Background()); err != nil {
				t.Error(err)
			}
		})
		if c.Ready() == nil {
			t.Fatal("a stopped coordinator reports ready")
		}
	}
}
