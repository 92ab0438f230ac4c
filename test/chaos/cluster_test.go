//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

// natsCluster is a NATS cluster whose nodes are `jetsaga server` child
// processes, each with its own store, so a node can be killed for real and
// brought back as itself (same name, store and ports).
type natsCluster struct {
	nodes []*proc
	names []string // server names, by node
	urls  []string // client URLs, by node
}

// serverReady is what `jetsaga server` prints once it serves clients.
const serverReady = "jetsaga server: listening on "

// startNATSCluster starts n nodes routed to each other and waits until
// each answers. Routes need every port before any node starts, so ports
// are picked by the kernel and released just before use; if another
// process takes one meanwhile, the cluster is started again on others.
func startNATSCluster(t *testing.T, ps *procs, n int) *natsCluster {
	t.Helper()
	var lastErr error
	for try := 1; try <= 3; try++ {
		c, err := tryNATSCluster(t, ps, n, try)
		if err == nil {
			return c
		}
		lastErr = err
		t.Logf("NATS cluster, try %d: %v", try, err)
	}
	t.Fatalf("cannot start a NATS cluster of %d: %v", n, lastErr)
	return nil
}

func tryNATSCluster(t *testing.T, ps *procs, n, try int) (*natsCluster, error) {
	ports, err := natstest.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(ports[n+i]) // itself included: harmless
	}
	c := &natsCluster{}
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		procName := name
		if try > 1 {
			procName = fmt.Sprintf("%s-try%d", name, try)
		}
		c.names = append(c.names, name)
		c.urls = append(c.urls, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
		c.nodes = append(c.nodes, ps.start(procName, "server", "-dir", t.TempDir(),
			"-port", strconv.Itoa(ports[i]), "-name", name,
			"-cluster-name", "chaos", "-cluster-port", strconv.Itoa(ports[n+i]),
			"-routes", strings.Join(routes, ",")))
	}
	// They start together: JetStream answers only once a quorum is up.
	for _, node := range c.nodes {
		if _, err := node.waitOutput(serverReady, 90*time.Second); err != nil {
			for _, node := range c.nodes {
				node.discard()
			}
			return nil, err
		}
	}
	return c, nil
}

// url joins the client URLs, for a connection that fails over between
// nodes.
func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

// node returns the node whose server name is name, or nil.
func (c *natsCluster) node(name string) *proc {
	for i, n := range c.names {
		if n == name {
			return c.nodes[i]
		}
	}
	return nil
}

// restart brings node back after a kill and waits until it answers.
func (c *natsCluster) restart(t *testing.T, node *proc) {
	t.Helper()
	node.restart()
	if _, err := node.waitOutput(serverReady, 90*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy waits until the cluster can place a stream on every node
// and every stream and consumer has a leader and all its replicas
// current: then one node may go down without any of them losing its
// quorum.
func waitHealthy(t *testing.T, js jetstream.JetStream, replicas int, timeout time.Duration) {
	t.Helper()
	natstest.Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return health(ctx, js, replicas)
	})
}

func health(ctx context.Context, js jetstream.JetStream, replicas int) error {
	probe := jetstream.StreamConfig{Name: "CHAOS_PROBE", Subjects: []string{"chaos.probe"}, Storage: jetstream.MemoryStorage, Replicas: replicas}
	if _, err := js.CreateStream(ctx, probe); err != nil {
		return fmt.Errorf("probe stream: %w", err)
	}
	if err := js.DeleteStream(ctx, probe.Name); err != nil {
		return fmt.Errorf("probe stream delete: %w", err)
	}
	names := js.StreamNames(ctx)
	var streams []string
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if err := names.Err(); err != nil {
		return err
	}
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		if err := replicated("stream "+name, s.CachedInfo().Cluster, s.CachedInfo().Config.Replicas); err != nil {
			return err
		}
		// The lister's goroutine ends only once its channel is drained:
		// read it all, whatever is found.
		var problem error
		cons := s.ListConsumers(ctx)
		for ci := range cons.Info() {
			if err := replicated("consumer "+name+"/"+ci.Name, ci.Cluster, ci.Config.Replicas); err != nil && problem == nil {
				problem = err
			}
		}
		if err := cons.Err(); err != nil && problem == nil {
			problem = fmt.Errorf("stream %s consumers: %w", name, err)
		}
		if problem != nil {
			return problem
		}
	}
	return nil
}

// replicated says what is wrong with a stream's or consumer's raft group.
func replicated(what string, cl *jetstream.ClusterInfo, want int) error {
	if cl == nil {
		return fmt.Errorf("%s: no cluster info", what)
	}
	if cl.Leader == "" {
		return fmt.Errorf("%s: no leader", what)
	}
	// A consumer's replicas default to its stream's (0 in its config).
	if want > 1 && len(cl.Replicas) != want-1 {
		return fmt.Errorf("%s: %d followers, want %d", what, len(cl.Replicas), want-1)
	}
	for _, r := range cl.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("%s: replica on %s not current (offline %v, lag %d)", what, r.Name, r.Offline, r.Lag)
		}
	}
	return nil
}

// streamLeader is the server name of a stream's leader.
func streamLeader(js jetstream.JetStream, stream string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	if cl := s.CachedInfo().Cluster; cl != nil && cl.Leader != "" {
		return cl.Leader, nil
	}
	return "", errors.New("no leader")
}
