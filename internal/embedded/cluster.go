package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a cluster of in-process nodes, for tests and benchmarks. Its
// methods are not safe for concurrent use.
type Cluster struct {
	// Servers are the nodes; Servers[i] is replaced by Restart(i).
	Servers []*Server

	configs []Config
	down    []bool
}

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Name is the cluster's name (default DefaultClusterName).
	Name string
	// SyncAlways is Config.SyncAlways for every node.
	SyncAlways bool
}

// StartCluster starts one node per store directory, named n0, n1, ...,
// routed to each other on free loopback ports, and returns once every
// node is a current JetStream peer and streams can be placed on all of
// them. Ports are picked by the kernel and released just before use, so
// another process can take one in between: the error then wraps
// ErrStartFailed and a retry with fresh ports is likely to work.
func StartCluster(ctx context.Context, dirs []string, opts ClusterOptions) (*Cluster, error) {
	n := len(dirs)
	if n < 1 {
		return nil, fmt.Errorf("%w: a cluster needs at least one node", ErrInvalidConfig)
	}
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = DefaultClusterName
	}
	c := &Cluster{Servers: make([]*Server, n), configs: make([]Config, n), down: make([]bool, n)}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+j]))
			}
		}
		c.configs[i] = Config{
			Dir:        dirs[i],
			Host:       "127.0.0.1",
			Port:       ports[i],
			ServerName: fmt.Sprintf("n%d", i),
			SyncAlways: opts.SyncAlways,
			Cluster:    &ClusterConfig{Name: name, Host: "127.0.0.1", Port: ports[n+i], Routes: routes},
		}
	}
	// JetStream answers only once a quorum is up, so nodes start together.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.Servers[i], errs[i] = Start(ctx, c.configs[i]) })
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		err = c.WaitWhole(ctx)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Shutdown stops node i gracefully and waits until it has stopped.
func (c *Cluster) Shutdown(i int) {
	c.Servers[i].Shutdown()
	c.down[i] = true
}

// Restart starts node i, which must have been shut down, again with the
// same name, store and ports, and waits until the cluster is whole.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if !c.down[i] {
		return fmt.Errorf("embedded: restart node %d: it is running; shut it down first", i)
	}
	srv, err := Start(ctx, c.configs[i])
	if err != nil {
		return fmt.Errorf("embedded: restart node %d: %w", i, err)
	}
	c.Servers[i], c.down[i] = srv, false
	return c.WaitWhole(ctx)
}

// Close shuts every node down.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, s := range c.Servers {
		if s != nil {
			wg.Go(s.Shutdown)
		}
	}
	wg.Wait()
}

// URLs are the nodes' client URLs, in node order; they stay valid across
// Shutdown and Restart.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.configs))
	for i, cfg := range c.configs {
		urls[i] = fmt.Sprintf("nats://%s:%d", cfg.Host, cfg.Port)
	}
	return urls
}

// URL is URLs joined with commas: a client URL that fails over between
// nodes.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// WaitWhole waits until the meta leader sees every running node as a
// current JetStream peer and a stream can be placed on all of them. Before
// that, creating an R3 stream can fail with "no suitable peers for
// placement" although JetStream already answers.
func (c *Cluster) WaitWhole(ctx context.Context) error {
	want := 0
	for i := range c.Servers {
		if !c.down[i] {
			want++
		}
	}
	for {
		var missing string
		var leader *Server
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
			missing = probePlacement(ctx, leader, want)
		}
		if missing == "" {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("embedded: cluster not whole: %s: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// probePlacement creates and deletes a stream with one replica per running
// node. The meta leader can list every peer and still place nothing on one
// it has not heard from lately ("no suitable peers for placement, peer
// offline"), so this is the check that placement works. It returns what is
// wrong, or "".
func probePlacement(ctx context.Context, leader *Server, replicas int) string {
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
	cfg := jetstream.StreamConfig{Name: "EMBEDDED_PROBE", Subjects: []string{"embedded.probe"}, Storage: jetstream.FileStorage, Replicas: replicas}
	if _, err := js.CreateStream(pctx, cfg); err != nil {
		return "probe stream: " + err.Error()
	}
	if err := js.DeleteStream(pctx, cfg.Name); err != nil {
		return "probe stream delete: " + err.Error()
	}
	return ""
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
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
			return nil, fmt.Errorf("embedded: pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
