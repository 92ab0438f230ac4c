package test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/lease"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

func leased(t *testing.T, url, name string, ttl time.Duration) *coordinator.Coordinator {
	t.Helper()
	_, js := natstest.Connect(t, url)
	c, err := coordinator.New(js, coordinator.Config{Name: name, Topology: testTopo(), LeaseTTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func owned(c *coordinator.Coordinator) []int {
	var out []int
	for _, p := range c.Status().Partitions {
		out = append(out, p.ID)
	}
	return out
}

// every partition owned by exactly one of the coordinators.
func exactlyOnce(cs ...*coordinator.Coordinator) error {
	seen := map[int]string{}
	for _, c := range cs {
		for _, p := range owned(c) {
			if o, dup := seen[p]; dup {
				return fmt.Errorf("partition %d driven by %s and %s", p, o, c.Status().Name)
			}
			seen[p] = c.Status().Name
		}
	}
	if len(seen) != testPartitions {
		return fmt.Errorf("%d of %d partitions driven: %v", len(seen), testPartitions, seen)
	}
	return nil
}

// Coordinators share the partitions through leases, hand them off at once
// when one stops, and take over a dead one's after its lease expires; the
// sagas go on throughout.
func TestLeasesShareHandOffAndFailOver(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	_, js := natstest.Connect(t, url)
	const ttl = 2 * time.Second
	c1 := leased(t, url, "c1", ttl)
	c2 := leased(t, url, "c2", ttl)
	natstest.Eventually(t, 30*time.Second, func() error {
		if err := exactlyOnce(c1, c2); err != nil {
			return err
		}
		if len(owned(c1)) == 0 || len(owned(c2)) == 0 {
			return fmt.Errorf("not shared: c1 %v, c2 %v", owned(c1), owned(c2))
		}
		return nil
	})
	holders, err := lease.Holders(context.Background(), js, "")
	if err != nil || len(holders) != testPartitions {
		t.Fatalf("holders %v, %v", holders, err)
	}
	for _, h := range holders {
		if h.Epoch == 0 || (h.Member != "c1" && h.Member != "c2") {
			t.Fatalf("lease %+v", h)
		}
	}

	cl, err := client.New(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	startRaw(t, js, behaviourUntil(hold))
	ctx := ctxT(t)
	var ids []string
	for range 8 {
		id, err := cl.Start(ctx, trip(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}

	// Graceful: c1 stops; c2 takes everything without waiting for a TTL
	// (checked by outcome, not by time: c2 ends up with all partitions).
	if err := c1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() error { return exactlyOnce(c2) })

	// A crash: c3 joins, takes its share, then its connection dies without
	// a Stop; its leases expire and c2 takes them back.
	nc3, js3 := natstest.Connect(t, url)
	c3, err := coordinator.New(js3, coordinator.Config{Name: "c3", Topology: testTopo(), LeaseTTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c3.Stop(context.Background()) })
	natstest.Eventually(t, 30*time.Second, func() error {
		if len(owned(c3)) == 0 {
			return fmt.Errorf("c3 owns nothing yet")
		}
		return exactlyOnce(c2, c3)
	})
	nc3.Close()
	natstest.Eventually(t, 30*time.Second, func() error {
		if got := owned(c3); len(got) != 0 {
			return fmt.Errorf("c3 still drives %v after losing its connection", got)
		}
		return exactlyOnce(c2)
	})
	close(hold)
	for _, id := range ids {
		s, err := cl.Wait(ctx, id)
		if err != nil || s.Status != client.StatusSucceeded {
			t.Fatalf("saga %s: %v %v", id, s, err)
		}
		if err := epochsNeverDecrease(ctx, cl, id); err != nil {
			t.Fatal(err)
		}
	}
	st := c2.Status()
	if st.LeasesAcquired < testPartitions/2 || !slices.Equal(owned(c2), []int{0, 1, 2, 3}) {
		t.Fatalf("c2 status %+v", st)
	}
}

// behaviourUntil answers every request once hold is closed.
func behaviourUntil(hold chan struct{}) behaviour {
	return func(req events.ActionRequest) (any, *events.Error, bool) {
		<-hold
		return succeedAll(req)
	}
}

// epochsNeverDecrease checks the fencing invariant on one saga's log: every
// event carries its writer's lease epoch, and along the log it never goes
// down — a decrease would be a coordinator writing after a newer owner had.
func epochsNeverDecrease(ctx context.Context, cl *client.Client, id string) error {
	evs, err := cl.Events(ctx, id)
	if err != nil {
		return err
	}
	var last uint64
	var lastWriter string
	for _, e := range evs {
		if e.Epoch == 0 {
			return fmt.Errorf("saga %s: event %s (%s) carries no epoch", id, e.ID, e.Source)
		}
		if e.Epoch < last {
			return fmt.Errorf("saga %s: event %s by %s at epoch %d follows one by %s at epoch %d", id, e.ID, e.Source, e.Epoch, lastWriter, last)
		}
		last, lastWriter = e.Epoch, e.Source
	}
	return nil
}
