package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/internal/embedded"
)

// TargetConfig says which server a benchmark runs against.
type TargetConfig struct {
	// URL of a running server or cluster; empty starts an embedded one.
	URL string
	// InProcess connects to the embedded server in-process instead of over
	// TCP loopback.
	InProcess bool
	// SyncAlways makes the embedded server fsync every write.
	SyncAlways bool
	// Nodes > 1 starts an embedded cluster of that many nodes instead of
	// one server.
	Nodes int
	// Dir holds the embedded server's store; default a temporary
	// directory, removed afterwards.
	Dir string
}

// Target is a server to benchmark against.
type Target struct {
	// Dial opens a connection to it; URL is its client URL.
	Dial func(name string) (*nats.Conn, error)
	URL  string
	// Describe says what it is and the durability of its writes.
	Describe string
	close    func()
}

// Close stops an embedded server and removes its temporary store.
func (t *Target) Close() {
	if t.close != nil {
		t.close()
	}
}

// StartTarget connects to cfg.URL or starts an embedded single-node server.
func StartTarget(ctx context.Context, cfg TargetConfig) (*Target, error) {
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.ReconnectBufSize(-1)}
	if cfg.URL != "" {
		if cfg.InProcess || cfg.SyncAlways {
			return nil, errors.New("bench: in-process connections and --sync apply to the embedded server only; set fsync on your server (jetstream { sync_interval: always })")
		}
		return &Target{
			URL:      cfg.URL,
			Describe: "server " + cfg.URL + " (its own sync settings; R3 streams are acknowledged once replicated to a quorum)",
			Dial: func(name string) (*nats.Conn, error) {
				return nats.Connect(cfg.URL, append(opts, nats.Name(name))...)
			},
		}, nil
	}
	if cfg.Nodes > 1 {
		return startCluster(ctx, cfg, opts)
	}
	dir, cleanup := cfg.Dir, func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "jetsaga-bench")
		if err != nil {
			return nil, err
		}
		dir, cleanup = d, func() { os.RemoveAll(d) }
	}
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Port: -1, ServerName: "bench", SyncAlways: cfg.SyncAlways})
	if err != nil {
		cleanup()
		return nil, err
	}
	t := &Target{close: func() { srv.Shutdown(); cleanup() }}
	how := "over TCP loopback"
	if cfg.InProcess {
		how = "in-process"
		opts = append(opts, nats.InProcessServer(srv.NATS()))
	}
	sync := "writes acknowledged from the page cache, fsync every 2 min (NATS default): survives a process crash, not a power loss"
	if cfg.SyncAlways {
		sync = "fsync before every acknowledgement (--sync always): survives a power loss"
	}
	t.Describe = fmt.Sprintf("embedded nats-server, one node, R1 file store, connected %s; %s", how, sync)
	url := srv.ClientURL()
	t.URL = url
	t.Dial = func(name string) (*nats.Conn, error) {
		return nats.Connect(url, append(opts, nats.Name(name))...)
	}
	return t, nil
}

// startCluster starts an embedded cluster of cfg.Nodes nodes, each with
// its own temporary store.
func startCluster(ctx context.Context, cfg TargetConfig, opts []nats.Option) (*Target, error) {
	if cfg.InProcess {
		return nil, errors.New("bench: in-process connections apply to a single embedded server, not a cluster")
	}
	root, err := os.MkdirTemp("", "jetsaga-bench-cluster")
	if err != nil {
		return nil, err
	}
	dirs := make([]string, cfg.Nodes)
	for i := range dirs {
		dirs[i] = filepath.Join(root, fmt.Sprintf("n%d", i))
	}
	c, err := embedded.StartCluster(ctx, dirs, embedded.ClusterOptions{SyncAlways: cfg.SyncAlways})
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	sync := "writes acknowledged once a quorum of nodes has them in the page cache (fsync every 2 min)"
	if cfg.SyncAlways {
		sync = "writes acknowledged once a quorum of nodes has fsynced them"
	}
	url := c.URL()
	return &Target{
		URL:      url,
		Describe: fmt.Sprintf("embedded %d-node nats-server cluster in this process, over TCP loopback; %s", cfg.Nodes, sync),
		Dial: func(name string) (*nats.Conn, error) {
			return nats.Connect(url, append(opts, nats.Name(name))...)
		},
		close: func() { c.Close(); os.RemoveAll(root) },
	}, nil
}
