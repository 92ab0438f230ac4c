package natstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/embedded"
)

// StartTimeout bounds how long RunServer, RunCluster and Cluster.Restart
// wait for servers to be ready. A cluster's first meta leader election
// takes about five seconds.
const StartTimeout = 30 * time.Second

// RunServer starts a single-node server with JetStream on a random port,
// storing in a t.TempDir, shut down by t.Cleanup.
func RunServer(t testing.TB) *embedded.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir(), Port: -1, ServerName: "natstest"})
	if err != nil {
		t.Fatalf("natstest: start server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect connects to url (several URLs may be joined with commas, see
// Cluster.URLs) and returns the connection and a JetStream context, closed
// by t.Cleanup. The connection reconnects quickly and forever, so it
// survives node restarts.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url,
		nats.Name("natstest "+t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Cluster is a cluster of in-process nodes (embedded.Cluster) that fails
// its test instead of returning errors.
type Cluster struct {
	*embedded.Cluster
	t testing.TB
}

// RunCluster starts n nodes named n0, n1, ..., routed to each other, each
// with JetStream and its own t.TempDir store, and returns once the cluster
// is whole. The nodes are shut down by t.Cleanup.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: RunCluster: need at least one node, got %d", n)
	}
	// A port picked for a node can be taken by another process before
	// the node binds it; then the start is retried with fresh ports.
	const attempts = 3
	var lastErr error
	for range attempts {
		dirs := make([]string, n)
		for i := range dirs {
			dirs[i] = t.TempDir()
		}
		ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
		c, err := embedded.StartCluster(ctx, dirs, embedded.ClusterOptions{Name: "natstest"})
		cancel()
		if err == nil {
			t.Cleanup(c.Close)
			return &Cluster{Cluster: c, t: t}
		}
		lastErr = err
		if !errors.Is(err, embedded.ErrStartFailed) {
			break
		}
	}
	t.Fatalf("natstest: start cluster of %d: %v", n, lastErr)
	return nil
}

// Restart starts node i again with the same name, store and ports, and
// waits until the cluster is whole. The node must have been shut down.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := c.Cluster.Restart(ctx, i); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
}

// FreePorts returns n distinct ports that were free a moment ago.
func FreePorts(n int) ([]int, error) { return embedded.FreePorts(n) }

// Eventually calls f until it returns nil, failing the test with f's last
// error if that does not happen within timeout. The pause between calls
// grows from 5 ms to 100 ms.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: condition not met within %s: %v", timeout, err)
		}
		timer := time.NewTimer(min(wait, time.Until(deadline)+time.Millisecond))
		<-timer.C
		wait = min(2*wait, 100*time.Millisecond)
	}
}
