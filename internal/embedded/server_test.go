package embedded_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

func TestMain(m *testing.M) { natstest.Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, cfg embedded.Config) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func TestStartServesJetStream(t *testing.T) {
	t.Parallel()
	srv := start(t, embedded.Config{Dir: t.TempDir(), Port: -1})
	cfg := srv.Config()
	if cfg.Port <= 0 || cfg.Host != "127.0.0.1" || cfg.ServerName != "jetsaga-dev" {
		t.Fatalf("resolved config %+v: want the bound port and defaults", cfg)
	}
	if want := "nats://127.0.0.1:" + itoa(cfg.Port); srv.ClientURL() != want {
		t.Fatalf("ClientURL = %q, want %q", srv.ClientURL(), want)
	}
	if srv.ClusterURL() != "" {
		t.Fatalf("ClusterURL = %q for a single server", srv.ClusterURL())
	}
	// Ready means ready: JetStream answers at once, no polling.
	_, js := natstest.Connect(t, srv.ClientURL())
	if _, err := js.AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("AccountInfo right after Start: %v", err)
	}
	if srv.NATS().Name() != "jetsaga-dev" {
		t.Fatalf("server name %q", srv.NATS().Name())
	}
	srv.Shutdown()
	srv.Shutdown() // idempotent
}

func TestRestartKeepsStreams(t *testing.T) {
	t.Parallel()
	srv := start(t, embedded.Config{Dir: t.TempDir(), Port: -1})
	ctx := testCtx(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "keep", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	srv.Shutdown()

	again := start(t, srv.Config())
	if again.ClientURL() != srv.ClientURL() {
		t.Fatalf("restarted on %s, was %s", again.ClientURL(), srv.ClientURL())
	}
	_, js = natstest.Connect(t, again.ClientURL())
	s, err := js.Stream(ctx, "KEEP")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "still here" {
		t.Fatalf("message after restart = %v, %v", m, err)
	}
}

func TestStartPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	begin := time.Now()
	_, err = embedded.Start(testCtx(t), embedded.Config{Dir: t.TempDir(), Port: port})
	if !errors.Is(err, embedded.ErrStartFailed) {
		t.Fatalf("Start on a taken port = %v, want ErrStartFailed", err)
	}
	if msg := err.Error(); !strings.Contains(msg, itoa(port)) || !strings.Contains(msg, "address already in use") {
		t.Errorf("error does not say the port is in use: %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("failing took %s", d)
	}
}

func TestStartInvalidConfig(t *testing.T) {
	t.Parallel()
	_, err := embedded.Start(testCtx(t), embedded.Config{
		Port:    70000,
		Cluster: &embedded.ClusterConfig{Port: -2, Routes: []string{"nats://127.0.0.1:6222", "::bad"}},
	})
	if !errors.Is(err, embedded.ErrInvalidConfig) {
		t.Fatalf("Start = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"Dir is required", "Port 70000", "Cluster.Port -2", `Cluster.Routes[1] "::bad"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestStartGivesUpWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir(), Port: -1})
	if !errors.Is(err, embedded.ErrNotReady) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a canceled context = %v, want ErrNotReady and context.Canceled", err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	ports := freePorts(t, 6)
	cfgs := make([]embedded.Config, 3)
	for i := range 3 {
		var routes []string
		for j := range 3 {
			routes = append(routes, "nats://127.0.0.1:"+itoa(ports[3+j])) // itself included: harmless
		}
		cfgs[i] = embedded.Config{
			Dir: dirs[i], Port: ports[i], ServerName: "node-" + itoa(i),
			Cluster: &embedded.ClusterConfig{Name: "c", Port: ports[3+i], Routes: routes},
		}
	}
	// Nodes of a new cluster start together: JetStream needs a quorum.
	errs := make(chan error, 3)
	srvs := make([]*embedded.Server, 3)
	for i := range 3 {
		go func() {
			var err error
			srvs[i], err = embedded.Start(testCtx(t), cfgs[i])
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range srvs {
		t.Cleanup(s.Shutdown)
	}
	if got, want := srvs[1].ClusterURL(), "nats://127.0.0.1:"+itoa(ports[4]); got != want {
		t.Fatalf("ClusterURL = %q, want %q", got, want)
	}
	nc, err := nats.Connect(srvs[2].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		_, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3})
		return err
	})
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func itoa(i int) string { return strconv.Itoa(i) }
