package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
)

// Config.MaxInFlight bounds the requests outstanding across all sagas of a
// coordinator; sagas held back go on as requests finish.
func TestCoordinatorMaxInFlight(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	c, err := coordinator.New(js, coordinator.Config{Name: "bounded", Topology: testTopo(), MaxInFlight: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	cl, err := client.New(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	outstanding, peak := 0, 0
	startRaw(t, js, func(req events.ActionRequest) (any, *events.Error, bool) {
		mu.Lock()
		outstanding++
		peak = max(peak, outstanding)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // work; the bound must hold meanwhile
		mu.Lock()
		outstanding--
		mu.Unlock()
		return succeedAll(req)
	})
	def := saga.New("wide").Parallel(
		saga.Action("a", "wide.a"), saga.Action("b", "wide.b"), saga.Action("c", "wide.c")).MustBuild()
	ctx := ctxT(t)
	var ids []string
	for range 4 {
		id, err := cl.Start(ctx, def, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		s, err := cl.Wait(ctx, id)
		if err != nil || s.Status != client.StatusSucceeded {
			t.Fatalf("saga %s: %v %v", id, s, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if peak > 2 {
		t.Fatalf("%d requests were outstanding at once; the bound is 2", peak)
	}
	// The log says finished as soon as the last append is stored; the
	// coordinator adopts it a moment later.
	natstest.Eventually(t, 10*time.Second, func() error {
		if st := c.Status(); st.InFlightRequests != 0 {
			return fmt.Errorf("the coordinator counts %d requests in flight after every saga finished", st.InFlightRequests)
		}
		return nil
	})
}
