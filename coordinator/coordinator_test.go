package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

func TestVersionAtLeast(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		have string
		ok   bool
	}{{"2.12.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"2.12.0-beta.1", true}, {"2.11.9", false}, {"2.9.25", false}, {"", false}} {
		if got := versionAtLeast(c.have, MinServerVersion); got != c.ok {
			t.Errorf("versionAtLeast(%q) = %v", c.have, got)
		}
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := New(nil, Config{})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil JetStream: %v", err)
	}
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	_, err = New(js, Config{Topology: streams.Config{Partitions: 4}, Partitions: []int{1, 1, 9}, MaxInFlight: -1})
	for _, want := range []string{"partition 1 is listed twice", "partition 9 is not between 0 and 3", "must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestStartFailsFastWithoutJetStream(t *testing.T) {
	t.Parallel()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10e9) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	c, err := New(js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(context.Background())
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Fatalf("Start = %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Stop = %v", err)
	}
}

func TestStartStopIdempotent(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	c, err := New(js, Config{Topology: streams.Config{Partitions: 2}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(c.Status().Partitions); got != 2 {
		t.Fatalf("%d partitions", got)
	}
	for range 2 {
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A saga's summary (what jetsaga list shows) follows its progress: its
// Updated is written again once it falls markerRefresh behind, though the
// status did not change.
func TestSummaryFollowsProgress(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	topo := streams.Config{Partitions: 2}
	c, err := New(js, Config{Name: "c1", Topology: topo, markerRefresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	cl, err := client.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	// Two awaits one after the other: signals move the saga on without
	// changing its status (running).
	def := saga.New("slow").Then(saga.Await("a", "a")).Then(saga.Await("b", "b")).Then(saga.Await("c", "c")).MustBuild()
	id, err := cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	updated := func() time.Time {
		sums, err := cl.InFlight(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sums {
			if s.ID == id {
				return s.Updated
			}
		}
		t.Fatalf("saga %s not in flight", id)
		return time.Time{}
	}
	first := updated()
	for _, node := range []string{"a", "b"} {
		time.Sleep(100 * time.Millisecond) // a slow approver, not a synchronisation
		if err := cl.Signal(ctx, id, node, nil); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if u := updated(); !u.After(first) {
			return fmt.Errorf("summary's updated %s, not after %s", u, first)
		}
		return nil
	})
}
