// Package tripnode_test runs the TypeScript reference participant in
// examples/trip-node against a real server and coordinator: it must pass
// the conformance kit for each of its actions and carry the trip saga to
// success, through an unwind, and through retries. It needs Node.js and
// npm (and the npm registry, for `npm ci`); without them it is skipped,
// unless JETSAGA_REQUIRE_NODE is set (as .ci/run sets it), when it fails.
package tripnode_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/conformance"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/examples/trip"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/sagatest"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// build installs the participant's dependencies (npm ci, once) and
// compiles it (tsc).
func build(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("JETSAGA_REQUIRE_NODE") != "" {
				t.Fatalf("%s not found, and JETSAGA_REQUIRE_NODE is set: install Node.js and npm (Debian: apt-get install nodejs npm)", tool)
			}
			t.Skipf("%s not found: the Node reference participant is not tested (set JETSAGA_REQUIRE_NODE to make this a failure)", tool)
		}
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := os.Stat("node_modules/.package-lock.json"); err != nil {
		run("npm", "ci", "--no-audit", "--no-fund")
	}
	run("npm", "run", "build")
}

// startNode runs the participant against url until the test ends (in
// namespace ns, if given).
func startNode(t *testing.T, url string, ns ...string) {
	t.Helper()
	args := []string{"dist/main.js", "--server", url}
	if len(ns) > 0 {
		args = append(args, "--namespace", ns[0])
	}
	cmd := exec.Command("node", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving") {
				ready <- sc.Text()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		t.Log(line)
	case <-time.After(30 * time.Second):
		t.Fatal("the Node participant did not say it was serving within 30s")
	}
}

// microStats asks every instance of a micro service for its stats, as
// `nats micro stats` does.
func microStats(t *testing.T, nc *nats.Conn, service string) []micro.Stats {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := nc.PublishRequest("$SRV.STATS."+service, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var out []micro.Stats
	for {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			return out
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Fatalf("$SRV.STATS answer %s: %v", m.Data, err)
		}
		out = append(out, st)
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestNodeParticipant(t *testing.T) {
	build(t)
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	startNode(t, srv.ClientURL())

	lisbon := json.RawMessage(`{"traveller":"Ada","destination":"Lisbon"}`)
	flight := map[string]json.RawMessage{"flight": json.RawMessage(`{"kind":"flight","ref":"flight-00000000","traveller":"Ada","where":"Lisbon"}`)}
	for _, cfg := range []conformance.Config{
		{Action: "flights.book", Undo: true, Params: lisbon},
		{Action: "hotels.book", Undo: true, Params: lisbon, TransientParams: json.RawMessage(`{"traveller":"Ada","destination":"Lisbon","hotel_busy":5}`)},
		{Action: "cars.book", Undo: true, Params: lisbon, Outputs: flight, FailParams: json.RawMessage(`{"traveller":"Bob","destination":"Atlantis"}`)},
	} {
		cfg.Quiet = time.Second
		t.Run("conformance/"+cfg.Action, func(t *testing.T) { sagatest.Conformance(t, js, cfg) })
	}

	c, err := coordinator.New(js, coordinator.Config{Name: "trip-node-test"})
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
	book := func(p trip.Params) *client.Saga {
		t.Helper()
		id, err := cl.Start(ctx, trip.Definition(), p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := cl.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bookings := func(id string) int {
		t.Helper()
		b, err := trip.Bookings(ctx, js, id)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}

	s := book(trip.Params{Traveller: "Ada", Destination: "Lisbon"})
	if s.Status != client.StatusSucceeded || bookings(s.ID) != 3 {
		t.Fatalf("trip to Lisbon: %s with %d bookings, want succeeded with 3", s.Status, bookings(s.ID))
	}
	car, _ := s.Node("car")
	if !strings.Contains(string(car.Output), `"where":"Lisbon"`) {
		t.Fatalf("car output %s", car.Output)
	}

	s = book(trip.Params{Traveller: "Bob", Destination: trip.NoCars})
	if s.Status != client.StatusUnwound || s.FailedNode != "car" || bookings(s.ID) != 0 {
		t.Fatalf("trip to Atlantis: %s (failed node %q) with %d bookings left, want unwound at car with none", s.Status, s.FailedNode, bookings(s.ID))
	}

	s = book(trip.Params{Traveller: "Cy", Destination: "Oslo", HotelBusy: 2})
	hotel, _ := s.Node("hotel")
	if s.Status != client.StatusSucceeded || hotel.Attempt != 3 || bookings(s.ID) != 3 {
		t.Fatalf("trip with a busy hotel: %s, hotel attempt %d, %d bookings; want succeeded at the third attempt with 3", s.Status, hotel.Attempt, bookings(s.ID))
	}

	// Like a Go participant, the Node one is a NATS micro service that
	// `nats micro ls` / `stats` find, with what it did per action.
	var served int64
	for _, st := range microStats(t, js.Conn(), "jetsaga-participant") {
		if st.Metadata["participant"] != "trip-node" || st.Metadata["language"] != "typescript" {
			continue
		}
		for _, ep := range st.Endpoints {
			var as participant.ActionStats
			if err := json.Unmarshal(ep.Data, &as); err != nil {
				t.Fatalf("endpoint %s stats data %s: %v", ep.Name, ep.Data, err)
			}
			if as.Action == "cars.book" {
				served = as.Served
			}
		}
	}
	if served < 3 {
		t.Fatalf("the Node participant's micro service reports %d cars.book requests served, want at least the 3 trips' (discovery: %+v)", served, microStats(t, js.Conn(), "jetsaga-participant"))
	}

	// The Go participants of the same actions join: the two languages share
	// each action's consumer and barrier, and together still keep every
	// rule (a repeat or an undo may reach the other language).
	p, err := participant.New(js, participant.Config{Name: "trip-go"})
	if err != nil {
		t.Fatal(err)
	}
	if err := trip.Register(ctx, js, p); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("the Go participant starts beside the Node one: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	t.Run("conformance/mixed/cars.book", func(t *testing.T) {
		sagatest.Conformance(t, js, conformance.Config{Action: "cars.book", Undo: true, Params: lisbon, Outputs: flight,
			FailParams: json.RawMessage(`{"traveller":"Bob","destination":"Atlantis"}`), Quiet: time.Second})
	})
	for i := range 4 {
		s = book(trip.Params{Traveller: "Dee", Destination: []string{"Rome", trip.NoCars}[i%2]})
		want, n := client.StatusSucceeded, 3
		if i%2 == 1 {
			want, n = client.StatusUnwound, 0
		}
		if s.Status != want || bookings(s.ID) != n {
			t.Fatalf("mixed trip %d: %s with %d bookings, want %s with %d", i, s.Status, bookings(s.ID), want, n)
		}
	}
}

// The Node participant in a namespace serves that deployment's trips.
func TestNodeParticipantInNamespace(t *testing.T) {
	build(t)
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topo := streams.Config{Namespace: "teal"}
	if err := streams.Apply(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	startNode(t, srv.ClientURL(), "teal")
	c, err := coordinator.New(js, coordinator.Config{Name: "teal", Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	sagatest.Conformance(t, js, conformance.Config{Namespace: "teal", Action: "flights.book", Undo: true,
		Params: json.RawMessage(`{"traveller":"Ada","destination":"Lisbon"}`), Quiet: time.Second})
	cl, err := client.New(ctx, js, client.WithNamespace("teal"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := cl.Start(ctx, trip.Definition(), trip.Params{Traveller: "Eve", Destination: "Paris"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cl.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := trip.Bookings(ctx, js, id); s.Status != client.StatusSucceeded || err != nil || len(b) != 3 {
		t.Fatalf("trip in namespace teal: %s, %d bookings (%v)", s.Status, len(b), err)
	}
	if _, err := js.Stream(ctx, streams.WorkStream); err == nil {
		t.Fatal("the default namespace's streams exist: something ignored the namespace")
	}
}
