package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
)

// Draining a coordinator hands all its partitions to the other, which then
// drives every saga; undraining lets it take partitions again.
func TestDrainHandsPartitionsOff(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	start := func(name string) *coordinator.Coordinator {
		_, cjs := natstest.Connect(t, srv.ClientURL())
		c, err := coordinator.New(cjs, coordinator.Config{Name: name, Topology: testTopo(), Logger: testLogger(t), LeaseTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Stop(context.Background()) })
		return c
	}
	c1, c2 := start("c1"), start("c2")
	spread := func() error {
		if len(c1.Status().Partitions) == 0 || len(c2.Status().Partitions) == 0 {
			return fmt.Errorf("partitions: c1 %d, c2 %d", len(c1.Status().Partitions), len(c2.Status().Partitions))
		}
		return nil
	}
	natstest.Eventually(t, 30*time.Second, spread)
	if err := c1.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := c1.Status(); !st.Draining || len(st.Partitions) != 0 {
		t.Fatalf("drained c1: draining %v, %d partitions", st.Draining, len(st.Partitions))
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := len(c2.Status().Partitions); n != testPartitions {
			return fmt.Errorf("c2 holds %d of %d partitions", n, testPartitions)
		}
		return nil
	})
	// Sagas run on the remaining coordinator.
	startRaw(t, js, succeedAll)
	cl, err := client.New(ctxT(t), js)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cl: cl}
	for range 8 {
		id, err := cl.Start(ctxT(t), saga.New("d").Then(saga.Action("a", "drain.a")).MustBuild(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := e.wait(id); s.Status != client.StatusSucceeded {
			t.Fatalf("saga %s", s.Status)
		}
	}
	if len(c1.Status().Partitions) != 0 {
		t.Fatal("a drained coordinator took a partition")
	}
	if err := c1.Undrain(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, spread)
}
