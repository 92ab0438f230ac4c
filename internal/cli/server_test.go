package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

// serverCmd is `jetsaga server` running in the test's process.
type serverCmd struct {
	out, errb syncBuffer
	cancel    context.CancelFunc
	done      chan int
	once      sync.Once
	code      int
}

// startServerCmd runs `jetsaga server` with args until stop (or the
// test's end).
func startServerCmd(t *testing.T, args ...string) *serverCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serverCmd{cancel: cancel, done: make(chan int, 1)}
	go func() { s.done <- Run(ctx, append([]string{"server"}, args...), &s.out, &s.errb) }()
	t.Cleanup(func() {
		// A server that never got ready was reported by ready, or given
		// up on.
		if code := s.stop(); code != 0 && strings.Contains(s.out.String(), "listening on") {
			t.Errorf("server exited %d: %s", code, s.errb.String())
		}
	})
	return s
}

// stop interrupts the server and returns its exit code.
func (s *serverCmd) stop() int {
	s.once.Do(func() {
		s.cancel()
		s.code = <-s.done
		s.done <- s.code // for ready, if it still waits
	})
	return s.code
}

// ready waits for the line the server prints once ready and returns the
// client URL and the line.
func (s *serverCmd) ready(t *testing.T) (url, line string) {
	t.Helper()
	url, line, err := s.readyWithin(45 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return url, line
}

func (s *serverCmd) readyWithin(timeout time.Duration) (url, line string, err error) {
	const prefix = "jetsaga server: listening on "
	deadline := time.Now().Add(timeout)
	for {
		out := s.out.String()
		if i := strings.Index(out, prefix); i >= 0 {
			line, _, _ = strings.Cut(out[i:], "\n")
			return strings.Fields(line[len(prefix):])[0], line, nil
		}
		select {
		case code := <-s.done:
			s.done <- code
			return "", "", fmt.Errorf("server exited %d before it was ready: %s", code, s.errb.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("server not ready within %s: %s", timeout, s.errb.String())
		}
	}
}

func TestServerServesJetStreamUntilInterrupted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServerCmd(t, "-dir", dir, "-port", "-1", "-name", "solo")
	url, line := srv.ready(t)
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || !strings.Contains(line, "server solo, JetStream data in "+dir) {
		t.Fatalf("ready line: %q", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js := natstest.Connect(t, url)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "keep", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if code := srv.stop(); code != 0 {
		t.Fatalf("exit code %d after interrupt: %s", code, srv.errb.String())
	}
	if out := srv.out.String(); !strings.HasSuffix(out, "jetsaga server: stopping\njetsaga server: stopped\n") {
		t.Fatalf("output after interrupt: %q", out)
	}

	// The same -dir again: the stream is still there.
	url, _ = startServerCmd(t, "-dir", dir, "-port", "-1", "-name", "solo").ready(t)
	_, js = natstest.Connect(t, url)
	s, err := js.Stream(ctx, "KEEP")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetMsg(ctx, 1); err != nil || string(m.Data) != "kept" {
		t.Fatalf("message after restart = %v, %v", m, err)
	}
}

func TestServerCluster(t *testing.T) {
	t.Parallel()
	// Three nodes routed to each other, as a local cluster is run. They
	// start together: JetStream answers only once a quorum is up. The
	// ports are picked free and released just before the nodes bind them;
	// if another test takes one meanwhile, the cluster starts again on
	// others.
	var ports []string
	var nodes []*serverCmd
	for try := 1; ; try++ {
		ports = freePorts(t, 6) // client ports, then route ports
		var routes []string
		for i := range 3 {
			routes = append(routes, "nats-route://127.0.0.1:"+ports[3+i]) // itself included: harmless
		}
		nodes = nodes[:0]
		for i := range 3 {
			nodes = append(nodes, startServerCmd(t, "-dir", t.TempDir(), "-port", ports[i], "-name", "n"+strconv.Itoa(i),
				"-cluster-name", "test", "-cluster-port", ports[3+i], "-routes", strings.Join(routes, ",")))
		}
		var err error
		for i, n := range nodes {
			var url, line string
			if url, line, err = n.readyWithin(45 * time.Second); err != nil {
				break
			}
			if url != "nats://127.0.0.1:"+ports[i] || !strings.Contains(line, "cluster test, routes on nats://127.0.0.1:"+ports[3+i]) {
				t.Fatalf("node %d: ready line %q", i, line)
			}
		}
		if err == nil {
			break
		}
		for _, n := range nodes {
			n.stop()
		}
		if try == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("try %d: %v", try, err)
	}
	nc, js := natstest.Connect(t, "nats://127.0.0.1:"+ports[1])
	if got := nc.ConnectedClusterName(); got != "test" {
		t.Fatalf("connected to cluster %q, want test", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every node may not be a current peer yet right after the meta
	// leader's election: placement can fail for a moment.
	natstest.Eventually(t, 20*time.Second, func() error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3, Storage: jetstream.MemoryStorage})
		return err
	})
}

// freePorts returns n ports free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	ports := make([]string, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // every port distinct: closed only once all are picked
		ports[i] = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func TestServerUsage(t *testing.T) {
	t.Parallel()
	code, _, errs := run(t, "server", "-routes", "nats-route://127.0.0.1:6222")
	if code != 2 {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	for _, want := range []string{"-dir is required", "-routes needs -cluster-port", "usage: jetsaga server"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr does not say %q: %q", want, errs)
		}
	}
	code, _, errs = run(t, "server", "-dir", t.TempDir(), "-cluster-port", "6222")
	if code != 2 || !strings.Contains(errs, "-name is required with -cluster-port") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	code, _, errs = run(t, "server", "-dir", t.TempDir(), "extra")
	if code != 2 || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}
