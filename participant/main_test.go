package participant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// wait bounds every condition the tests poll for.
const wait = 10 * time.Second

// testCtx is a context for one test's I/O, ended with the test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// env is a server with jetsaga's topology, and what a test needs to play
// the coordinator: send requests, read replies.
type env struct {
	t       *testing.T
	url     string
	js      jetstream.JetStream
	replies *replies
	logs    *logBuffer
}

func setup(t *testing.T) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := streams.Apply(testCtx(t), js, streams.Config{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return &env{t: t, url: srv.ClientURL(), js: js, replies: readReplies(t, js), logs: &logBuffer{}}
}

// start makes, registers and starts a participant on its own connection,
// stopped by t.Cleanup. A zero cfg.Logger logs to e.logs.
func (e *env) start(cfg participant.Config, register func(p *participant.Participant)) (*participant.Participant, *nats.Conn) {
	e.t.Helper()
	nc, js := natstest.Connect(e.t, e.url)
	if cfg.Logger == nil {
		cfg.Logger = e.logger()
	}
	p, err := participant.New(js, cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	register(p)
	if err := p.Start(testCtx(e.t)); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			e.t.Errorf("Stop: %v", err)
		}
	})
	return p, nc
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustRegister(t *testing.T, p *participant.Participant, action string, do, undo participant.Handler) {
	t.Helper()
	if err := p.Register(action, do, undo); err != nil {
		t.Fatalf("Register(%s): %v", action, err)
	}
}

// req is a request as a test sends it; zero fields get defaults.
type req struct {
	saga     string // default: a new saga id
	node     string // default "n"
	op       events.Op
	attempt  int
	params   string
	outputs  map[string]string
	output   string // for undo; default null
	deadline time.Time
	msgID    string // default: the request id, as a coordinator sends it
	replyTo  string // default streams.ReplySubject(0)
}

// send publishes a request for action the way a coordinator does and
// returns its id.
func (e *env) send(action string, r req) string {
	e.t.Helper()
	if r.saga == "" {
		r.saga = uuid.NewString()
	}
	if r.node == "" {
		r.node = "n"
	}
	if r.op == "" {
		r.op = events.OpDo
	}
	if r.attempt == 0 {
		r.attempt = 1
	}
	if r.params == "" {
		r.params = "null"
	}
	if r.replyTo == "" {
		r.replyTo = streams.ReplySubject(0)
	}
	data := &events.ActionRequest{
		Op: r.op, Node: r.node, Action: action, Attempt: r.attempt,
		IdempotencyKey: r.saga + ":" + r.node, Params: json.RawMessage(r.params),
		Deadline: r.deadline, ReplyTo: r.replyTo,
	}
	if len(r.outputs) > 0 {
		data.Outputs = map[string]json.RawMessage{}
		for k, v := range r.outputs {
			data.Outputs[k] = json.RawMessage(v)
		}
	}
	if r.op == events.OpUndo {
		data.Output = json.RawMessage("null")
		if r.output != "" {
			data.Output = json.RawMessage(r.output)
		}
	}
	id := events.RequestID(r.saga, r.node, r.op, r.attempt)
	b, err := events.Encode(events.Event{ID: id, Source: events.SourceCoordinator, SagaID: r.saga, Time: time.Now(), Data: data})
	if err != nil {
		e.t.Fatalf("encode request: %v", err)
	}
	if r.msgID == "" {
		r.msgID = id
	}
	e.publish(action, b, r.msgID)
	return id
}

// publish puts raw bytes on action's request subject.
func (e *env) publish(action string, b []byte, msgID string) {
	e.t.Helper()
	if _, err := e.js.Publish(testCtx(e.t), streams.RequestSubject(action), b, jetstream.WithMsgID(msgID)); err != nil {
		e.t.Fatalf("publish request: %v", err)
	}
}

// settled waits until action's consumer has every request acked or
// terminated: nothing pending, nothing waiting for an ack.
func (e *env) settled(action string) {
	e.t.Helper()
	natstest.Eventually(e.t, wait, func() error {
		c, err := e.js.Consumer(testCtx(e.t), streams.WorkStream, streams.ActionConsumerName(action))
		if err != nil {
			return err
		}
		info, err := c.Info(testCtx(e.t))
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer of %s: %d pending, %d waiting for ack", action, info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// replies reads participants' replies from the WORK stream, as stored
// (duplicates by Nats-Msg-Id are dropped by the stream).
type replies struct {
	t    *testing.T
	it   jetstream.MessagesContext
	byID map[string][]*events.ActionReply
	all  int
}

func readReplies(t *testing.T, js jetstream.JetStream) *replies {
	t.Helper()
	c, err := js.OrderedConsumer(testCtx(t), streams.WorkStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.ReplySubject(0)},
	})
	if err != nil {
		t.Fatalf("reply consumer: %v", err)
	}
	it, err := c.Messages()
	if err != nil {
		t.Fatalf("reply consumer: %v", err)
	}
	t.Cleanup(it.Stop)
	return &replies{t: t, it: it, byID: map[string][]*events.ActionReply{}}
}

// read takes in the replies that arrive within d.
func (r *replies) read(d time.Duration) {
	r.t.Helper()
	for {
		msg, err := r.it.Next(jetstream.NextMaxWait(d))
		if err != nil {
			return
		}
		ev, err := events.Decode(msg.Data())
		if err != nil {
			r.t.Fatalf("reply does not decode: %v\n%s", err, msg.Data())
		}
		rep, ok := ev.Data.(*events.ActionReply)
		if !ok {
			r.t.Fatalf("reply has type %s", ev.Type())
		}
		if want := events.ReplyID(rep.RequestID); ev.ID != want || msg.Headers().Get(jetstream.MsgIDHeader) != want {
			r.t.Fatalf("reply id %q, Nats-Msg-Id %q; want %q", ev.ID, msg.Headers().Get(jetstream.MsgIDHeader), want)
		}
		if !strings.HasPrefix(ev.Source, events.SourceParticipant+"/") {
			r.t.Fatalf("reply source %q", ev.Source)
		}
		r.byID[rep.RequestID] = append(r.byID[rep.RequestID], rep)
		r.all++
		d = 50 * time.Millisecond // after the first, take what is already there
	}
}

// get waits for the reply to request id.
func (r *replies) get(id string) *events.ActionReply {
	r.t.Helper()
	deadline := time.Now().Add(wait)
	for len(r.byID[id]) == 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("no reply to %s within %s", id, wait)
		}
		r.read(200 * time.Millisecond)
	}
	return r.byID[id][0]
}

// logBuffer collects a participant's logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the logs hold every one of subs on one line.
func (b *logBuffer) waitFor(t *testing.T, subs ...string) string {
	t.Helper()
	var found string
	natstest.Eventually(t, wait, func() error {
		for line := range strings.Lines(b.String()) {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				found = line
				return nil
			}
		}
		return fmt.Errorf("no log line with %q", subs)
	})
	return found
}

// counter counts calls by key, safely from handlers.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	return c.n[key]
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}
