package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// testPartitions keeps the number of consumers small.
const testPartitions = 2

// testEnv is a server with a coordinator, a participant speaking the wire
// protocol, and definition files for the participant's actions.
type testEnv struct {
	t   *testing.T
	ns  streams.Namespace // every command runs with --namespace ns
	url string
	js  jetstream.JetStream
	cl  *client.Client
	dir string
}

// Definitions the participant (see answer) can run.
var testDefs = map[string]string{
	// Succeeds, with a subsaga.
	"ok.yaml": `name: trip
nodes:
  - {name: flight, kind: action, action: svc.ok, undo: svc.ok}
  - {name: hotel, kind: action, action: svc.ok, undo: svc.ok, after: [flight]}
  - name: car
    kind: subsaga
    after: [flight]
    saga:
      name: rental
      nodes:
        - {name: pick, kind: action, action: svc.ok, undo: svc.ok}
        - {name: pay, kind: action, action: svc.ok, after: [pick]}
`,
	// pay fails for good: flight is undone, the saga unwinds.
	"fail.yaml": `name: doomed
nodes:
  - {name: flight, kind: action, action: svc.ok, undo: svc.ok}
  - {name: pay, kind: action, action: svc.fail, after: [flight]}
`,
	// pay fails, then the undo of a fails: the saga is stuck until an
	// operator retries (the second undo attempt succeeds) or resolves.
	"stuck.yaml": `name: sticky
nodes:
  - {name: a, kind: action, action: svc.stuck, undo: svc.stuck}
  - {name: pay, kind: action, action: svc.fail, after: [a]}
`,
	// pay fails; the undos of a and of b (a slow one) both fail: the saga
	// is stuck once both have failed.
	"stuck2.yaml": `name: sticky-twice
nodes:
  - {name: a, kind: action, action: svc.stuck, undo: svc.stuck}
  - {name: b, kind: action, action: svc.slowstuck, undo: svc.slowstuck}
  - {name: pay, kind: action, action: svc.fail, after: [a, b]}
`,
	// wait never gets a reply: the saga runs until an operator acts.
	"hold.yaml": `name: holding
nodes:
  - name: wait
    kind: action
    action: svc.hold
    undo: svc.hold
    timeout: 300ms
    retry: {max_attempts: 1000, initial_delay: 10ms, max_delay: 50ms}
`,
	// Waits for an approval, then charges when the amount is positive.
	"approval.yaml": `name: expense
nodes:
  - {name: book, kind: action, action: svc.ok, undo: svc.ok}
  - {name: approval, kind: await, event: expense.approved, after: [book]}
  - {name: pay, kind: action, action: svc.ok, after: [approval], pivot: true, when: "params.amount > 0"}
`,
	// fix fails until an operator retries it with params {"fixed": true};
	// the saga waits for an operator meanwhile.
	"waiting.yaml": `name: waits
on_failure: pause
nodes:
  - {name: a, kind: action, action: svc.ok, undo: svc.ok}
  - {name: fix, kind: action, action: svc.fixable, after: [a], retry: {max_attempts: 1}}
`,
	// Like hold.yaml, but wait has no undo.
	"noundo.yaml": `name: holding-no-undo
nodes:
  - name: wait
    kind: action
    action: svc.hold
    timeout: 300ms
    retry: {max_attempts: 1000, initial_delay: 10ms, max_delay: 50ms}
`,
}

func setup(t *testing.T) *testEnv {
	t.Helper()
	return setupWith(t, coordinator.Config{})
}

// setupWith is setup with a coordinator configured as cfg (its name and
// topology are the env's).
func setupWith(t *testing.T, cfg coordinator.Config) *testEnv {
	t.Helper()
	srv := natstest.RunServer(t)
	e := &testEnv{t: t, ns: cfg.Topology.Namespace, url: srv.ClientURL(), dir: t.TempDir()}
	_, e.js = natstest.Connect(t, e.url)
	_, cjs := natstest.Connect(t, e.url)
	cfg.Name, cfg.Topology = "c1", streams.Config{Namespace: e.ns, Partitions: testPartitions}
	c, err := coordinator.New(cjs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	startParticipantIn(t, e.js, e.ns)
	if e.cl, err = client.New(context.Background(), e.js, client.WithNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	for name, def := range testDefs {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// file is the path of a definition file of testDefs.
func (e *testEnv) file(name string) string { return filepath.Join(e.dir, name) }

// run runs a command against the env's server.
func (e *testEnv) run(args ...string) (int, string, string) {
	e.t.Helper()
	if e.ns != "" {
		args = append(args, "-namespace", string(e.ns))
	}
	return run(e.t, append(args, "-server", e.url)...)
}

// start starts a saga of a definition file and returns its id.
func (e *testEnv) start(file string, args ...string) string {
	e.t.Helper()
	code, out, errs := e.run(append([]string{"start", "-f", e.file(file)}, args...)...)
	id := strings.TrimSpace(out)
	if code != 0 || streams.ValidateSagaID(id) != nil {
		e.t.Fatalf("start %s: code %d\nstdout %s\nstderr %s", file, code, out, errs)
	}
	return id
}

// wait waits until the saga has finished or is stuck.
func (e *testEnv) wait(id string) *client.Saga {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.cl.Wait(ctx, id)
	if err != nil {
		e.t.Fatalf("wait for saga %s: %v", id, err)
	}
	return s
}

// waitRunning waits until the saga's log exists and it is running.
func (e *testEnv) waitRunning(id string) {
	e.t.Helper()
	natstest.Eventually(e.t, 20*time.Second, func() error {
		s, err := e.cl.Status(context.Background(), id)
		if err != nil {
			return err
		}
		if s.Status != client.StatusRunning {
			return fmt.Errorf("saga %s is %s", id, s.Status)
		}
		return nil
	})
}

// startParticipant answers every action request with nothing but a NATS
// client and the wire protocol (docs/protocol.md), by action:
//
//   - svc.ok: succeeds, do and undo;
//   - svc.fail: fails for good;
//   - svc.stuck: succeeds; its undo fails for good at attempt 1 and
//     succeeds after;
//   - svc.hold: never answers the action; the undo succeeds.
func startParticipant(t *testing.T, js jetstream.JetStream) { startParticipantIn(t, js, "") }

// startParticipantIn is startParticipant for namespace ns.
func startParticipantIn(t *testing.T, js jetstream.JetStream, ns streams.Namespace) {
	t.Helper()
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, ns.WorkStream(), jetstream.ConsumerConfig{
		Durable: "cli-test-participant", FilterSubject: ns.RequestSubject(">"), AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) { wg.Go(func() { answer(t, js, m) }) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Stop(); <-cc.Closed(); wg.Wait() })
}

func answer(t *testing.T, js jetstream.JetStream, m jetstream.Msg) {
	defer m.Ack() //nolint:errcheck // a lost ack is a redelivery
	ev, err := events.Decode(m.Data())
	if err != nil {
		t.Errorf("participant got a malformed request: %v", err)
		return
	}
	req := *ev.Data.(*events.ActionRequest)
	rep := &events.ActionReply{RequestID: ev.ID, Op: req.Op, Node: req.Node, Attempt: req.Attempt, OK: true}
	switch {
	case req.Action == "svc.hold" && req.Op == events.OpDo:
		return // no reply: the attempt times out
	case req.Action == "svc.fail":
		rep.OK, rep.Error = false, &events.Error{Kind: events.ErrorPermanent, Message: "sold out"}
	case req.Action == "svc.fixable" && !strings.Contains(string(req.Params), `"fixed":true`):
		rep.OK, rep.Error = false, &events.Error{Kind: events.ErrorPermanent, Message: "broken"}
	case req.Action == "svc.stuck" && req.Op == events.OpUndo && req.Attempt == 1:
		rep.OK, rep.Error = false, &events.Error{Kind: events.ErrorPermanent, Message: "cannot cancel"}
	case req.Action == "svc.slowstuck" && req.Op == events.OpUndo && req.Attempt == 1:
		time.Sleep(300 * time.Millisecond) // a slow service, not a synchronisation
		rep.OK, rep.Error = false, &events.Error{Kind: events.ErrorPermanent, Message: "cannot cancel either"}
	default:
		rep.Output, _ = json.Marshal(map[string]string{"ref": fmt.Sprintf("%s-%s-%d", req.Node, req.Op, req.Attempt)})
	}
	b, err := events.Encode(events.Event{ID: events.ReplyID(ev.ID), Source: "/test/participant", SagaID: ev.SagaID, Data: rep})
	if err != nil {
		t.Errorf("encode reply: %v", err)
		return
	}
	msg := nats.NewMsg(req.ReplyTo)
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, events.ReplyID(ev.ID))
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Errorf("reply: %v", err)
	}
}
