package test

import (
	"context"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

// Two coordinators pinned to the same partitions take turns at the same
// sagas, so each often holds a saga's state behind its log. A reply to an
// attempt the stale one has not seen must not be thrown away as stale: it
// re-reads the log first. (Before that fix, such replies were acked and
// lost, and sagas waited for attempts to time out; here the attempt
// timeout, 30 s, is longer than the test's deadline.)
func TestStaleStateNeverLosesAReply(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	all := []int{0, 1, 2, 3}
	var cs []*coordinator.Coordinator
	for _, name := range []string{"p1", "p2"} {
		_, js := natstest.Connect(t, srv.ClientURL())
		c, err := coordinator.New(js, coordinator.Config{Name: name, Topology: testTopo(), Partitions: all, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Stop(context.Background()) })
		cs = append(cs, c)
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	startRaw(t, js, succeedAll)
	cl, err := client.New(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ids []string
	for range 12 {
		id, err := cl.Start(ctx, chain4(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		s, err := cl.Wait(ctx, id)
		if err != nil || s.Status != client.StatusSucceeded {
			t.Fatalf("saga %s: %v, %v (a reply lost to a stale coordinator waits for a 30 s timeout)", id, s, err)
		}
	}
	t.Logf("write races lost: %d and %d", cs[0].Status().Conflicts, cs[1].Status().Conflicts)
}
