package test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// testPartitions keeps the number of consumers small in tests.
const testPartitions = 4

func testTopo() streams.Config { return streams.Config{Partitions: testPartitions} }

// env is a server, a coordinator and a client.
type env struct {
	t     *testing.T
	url   string
	nc    *nats.Conn
	js    jetstream.JetStream
	coord *coordinator.Coordinator
	cl    *client.Client
	topo  streams.Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, coordinator.Config{})
}

// newEnvWith is newEnv with its coordinator configured as cfg (its name,
// topology and logger are the env's).
func newEnvWith(t *testing.T, cfg coordinator.Config) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	e := &env{t: t, url: srv.ClientURL(), topo: testTopo()}
	e.nc, e.js = natstest.Connect(t, e.url)
	cfg.Name, cfg.Topology, cfg.Logger = "c1", e.topo, testLogger(t)
	e.coord = startCoordinatorWith(t, e.url, cfg)
	cl, err := client.New(context.Background(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	e.cl = cl
	return e
}

func (e *env) startCoordinator(name string) {
	e.t.Helper()
	e.coord = startCoordinator(e.t, e.url, name, e.topo, testLogger(e.t))
}

// startCoordinatorB starts a coordinator that logs nothing, for benchmarks.
func (e *env) startCoordinatorB(b *testing.B, name string) {
	e.coord = startCoordinator(b, e.url, name, e.topo, nil)
}

func startCoordinator(t testing.TB, url, name string, topo streams.Config, logger *slog.Logger) *coordinator.Coordinator {
	t.Helper()
	return startCoordinatorWith(t, url, coordinator.Config{Name: name, Topology: topo, Logger: logger})
}

func startCoordinatorWith(t testing.TB, url string, cfg coordinator.Config) *coordinator.Coordinator {
	t.Helper()
	_, js := natstest.Connect(t, url)
	c, err := coordinator.New(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawParticipant answers requests with nothing but a NATS client and the
// wire protocol (docs/protocol.md), as a participant in another language
// would. behave decides each reply; ok false means no reply (a timeout).
type rawParticipant struct {
	mu       sync.Mutex
	requests []events.ActionRequest
	cc       jetstream.ConsumeContext
}

type behaviour func(req events.ActionRequest) (out any, err *events.Error, reply bool)

func succeedAll(req events.ActionRequest) (any, *events.Error, bool) {
	return map[string]string{"node": req.Node, "op": string(req.Op)}, nil, true
}

func startRaw(t testing.TB, js jetstream.JetStream, behave behaviour) *rawParticipant {
	t.Helper()
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, streams.WorkStream, jetstream.ConsumerConfig{
		Durable: "raw-" + fmt.Sprint(time.Now().UnixNano()), FilterSubject: "jetsaga.req.>", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	p := &rawParticipant{}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	// Each request is handled on its own goroutine, so one held back does
	// not hold back the rest.
	p.cc, err = cons.Consume(func(m jetstream.Msg) { wg.Go(func() { p.handle(t, js, behave, m) }) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cc.Stop)
	return p
}

func (p *rawParticipant) handle(t testing.TB, js jetstream.JetStream, behave behaviour, m jetstream.Msg) {
	ctx := context.Background()
	{
		ev, err := events.Decode(m.Data())
		if err != nil {
			t.Errorf("participant got a malformed request: %v", err)
			_ = m.Term()
			return
		}
		req := *ev.Data.(*events.ActionRequest)
		p.mu.Lock()
		p.requests = append(p.requests, req)
		p.mu.Unlock()
		out, rerr, reply := behave(req)
		if reply {
			rep := &events.ActionReply{RequestID: ev.ID, Op: req.Op, Node: req.Node, Attempt: req.Attempt, OK: rerr == nil, Error: rerr}
			if rerr == nil {
				rep.Output, _ = json.Marshal(out)
			}
			b, _ := events.Encode(events.Event{ID: events.ReplyID(ev.ID), Source: "/test/raw", SagaID: ev.SagaID, Data: rep})
			msg := nats.NewMsg(req.ReplyTo)
			msg.Data = b
			msg.Header.Set(jetstream.MsgIDHeader, events.ReplyID(ev.ID))
			if _, err := js.PublishMsg(ctx, msg); err != nil {
				t.Errorf("reply: %v", err)
			}
		}
		_ = m.Ack()
	}
}

func (p *rawParticipant) seen() []events.ActionRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]events.ActionRequest(nil), p.requests...)
}

// waitStatus waits until the saga reaches one of the states.
func (e *env) wait(id string) *client.Saga {
	e.t.Helper()
	s, err := e.cl.Wait(ctxT(e.t), id)
	if err != nil {
		e.t.Fatalf("wait for saga %s: %v", id, err)
	}
	return s
}
