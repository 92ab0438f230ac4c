package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

// Leases never wait behind data (issue 12, §4): while everything the
// coordinator sends on its data connection is held back (the extreme of a
// saturated data path), its leases are still renewed on their own
// connection, and it loses none.
func TestLeasesRenewWhileTheDataPathIsStalled(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	px := startProxy(t, strings.TrimPrefix(srv.ClientURL(), "nats://"))
	_, js := natstest.Connect(t, px.url())
	const ttl = 3 * time.Second
	c, err := coordinator.New(js, coordinator.Config{Name: "c", Topology: testTopo(), LeaseTTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := len(c.Status().Partitions); n != testPartitions {
			return fmt.Errorf("%d of %d partitions", n, testPartitions)
		}
		return nil
	})
	if px.count() < 2 {
		t.Fatalf("the coordinator opened %d connection(s); want its data connection and the leases' own", px.count())
	}
	// Connection 0 is the test's (and coordinator's) data connection.
	px.pause(0, true)
	time.Sleep(3 * ttl) // the fault: the data path stalls for three lease TTLs
	st := c.Status()
	px.pause(0, false)
	if st.LeasesLost != 0 || len(st.Partitions) != testPartitions {
		t.Fatalf("with the data path stalled for %s (lease TTL %s): %d leases lost, %d partitions held", 3*ttl, ttl, st.LeasesLost, len(st.Partitions))
	}
}
