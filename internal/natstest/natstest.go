package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
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

// Cluster is a cluster of in-process nodes. Its methods are not safe for
// concurrent use.
type Cluster struct {
	// Servers are the nodes; Servers[i] is replaced by Restart(i).
	Servers []*embedded.Server

	t       testing.TB
	configs []embedded.Config
	down    []bool
}

// RunCluster starts n nodes named n0, n1, ..., routed to each other, each
// with JetStream and its own t.TempDir store, and returns once the cluster's
// JetStream has a meta leader. The nodes are shut down by t.Cleanup.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: RunCluster: need at least one node, got %d", n)
	}
	// Routes need every node's port before any node starts, so ports are
	// picked by the kernel and released just before use. Another process
	// can grab one in between; then the start fails with a port in use
	// and is retried with fresh ports.
	const attempts = 3
	var lastErr error
	for range attempts {
		dirs := make([]string, n)
		for i := range dirs {
			dirs[i] = t.TempDir()
		}
		c, err := startCluster(t, dirs)
		if err == nil {
			t.Cleanup(c.shutdownAll)
			return c
		}
		lastErr = err
		if !errors.Is(err, embedded.ErrStartFailed) {
			break
		}
	}
	t.Fatalf("natstest: start cluster of %d: %v", n, lastErr)
	return nil
}

func startCluster(t testing.TB, dirs []string) (*Cluster, error) {
	n := len(dirs)
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{t: t, Servers: make([]*embedded.Server, n), configs: make([]embedded.Config, n), down: make([]bool, n)}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+j]))
			}
		}
		c.configs[i] = embedded.Config{
			Dir:        dirs[i],
			Host:       "127.0.0.1",
			Port:       ports[i],
			ServerName: fmt.Sprintf("n%d", i),
			Cluster: &embedded.ClusterConfig{
				Name:   "natstest",
				Host:   "127.0.0.1",
				Port:   ports[n+i],
				Routes: routes,
			},
		}
	}
	// JetStream answers only once a quorum is up, so nodes start together.
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c.Servers[i], errs[i] = embedded.Start(ctx, c.configs[i])
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		err = c.waitWhole(ctx)
	}
	if err != nil {
		c.shutdownAll()
		return nil, err
	}
	return c, nil
}

// waitWhole waits until the meta leader sees every running node as a
// current JetStream peer. Before that, creating an R3 stream can fail with
// "no suitable peers for placement" although JetStream already answers.
func (c *Cluster) waitWhole(ctx context.Context) error {
	want := 0
	for i := range c.Servers {
		if !c.down[i] {
			want++
		}
	}
	for {
		var missing string
		var leader *embedded.Server
		for i, s := range c.Servers {
			if c.down[i] {
				continue
			}
			if s.NATS().JetStreamIsLeader() {
				leader = s
			}
			if !s.NATS().JetStreamIsCurrent() {
				missing = fmt.Sprintf("node %d is not current", i)
			}
		}
		switch {
		case leader == nil:
			missing = "no meta leader"
		case len(leader.NATS().JetStreamClusterPeers()) != want:
			missing = fmt.Sprintf("meta leader sees peers %v, want %d", leader.NATS().JetStreamClusterPeers(), want)
		}
		if missing == "" {
			missing = c.probePlacement(ctx, leader, want)
		}
		if missing == "" {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("natstest: cluster not whole: %s: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// probePlacement creates and deletes a stream with one replica per running
// node. The meta leader can list every peer and still place nothing on one
// it has not heard from lately ("no suitable peers for placement, peer
// offline"), so this is the check that placement works. It returns what is
// wrong, or "".
func (c *Cluster) probePlacement(ctx context.Context, leader *embedded.Server, replicas int) string {
	nc, err := nats.Connect(leader.ClientURL())
	if err != nil {
		return "probe: " + err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "probe: " + err.Error()
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: "NATSTEST_PROBE", Subjects: []string{"natstest.probe"}, Storage: jetstream.MemoryStorage, Replicas: replicas}
	if _, err := js.CreateStream(pctx, cfg); err != nil {
		return "probe stream: " + err.Error()
	}
	if err := js.DeleteStream(pctx, cfg.Name); err != nil {
		return "probe stream delete: " + err.Error()
	}
	return ""
}

// FreePorts returns n distinct ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natstest: pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// URLs are the nodes' client URLs, in node order; they stay valid across
// Shutdown and Restart. strings.Join(c.URLs(), ",") makes a URL for Connect
// that fails over between nodes.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.configs))
	for i, cfg := range c.configs {
		urls[i] = fmt.Sprintf("nats://%s:%d", cfg.Host, cfg.Port)
	}
	return urls
}

// URL is URLs joined with commas.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// Shutdown stops node i gracefully and waits until it has stopped.
func (c *Cluster) Shutdown(i int) {
	c.t.Helper()
	c.Servers[i].Shutdown()
	c.down[i] = true
}

// Restart starts node i again with the same name, store and ports, and
// waits until its JetStream answers. The node must have been shut down.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if !c.down[i] {
		c.t.Fatalf("natstest: Restart(%d): node is running; Shutdown it first", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	srv, err := embedded.Start(ctx, c.configs[i])
	if err != nil {
		c.t.Fatalf("natstest: restart node %d: %v", i, err)
	}
	c.Servers[i], c.down[i] = srv, false
	if err := c.waitWhole(ctx); err != nil {
		c.t.Fatalf("natstest: restart node %d: %v", i, err)
	}
}

func (c *Cluster) shutdownAll() {
	var wg sync.WaitGroup
	for _, s := range c.Servers {
		if s != nil {
			wg.Go(s.Shutdown)
		}
	}
	wg.Wait()
}

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
