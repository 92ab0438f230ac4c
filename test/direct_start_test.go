package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/streams"
)

// commandsStored counts the commands JETSAGA_WORK holds.
func commandsStored(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(ctxT(t), streams.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t), jetstream.WithSubjectFilter("jetsaga.cmd.>"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// TestDirectStartWritesNoCommand: with a coordinator holding the
// partitions, a start is decided directly and the only write it costs is
// the saga's first append; with none, it waits as a command
// (TestIdempotencyConflictBeforeTheSagaIsCreated).
func TestDirectStartWritesNoCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	def, _ := keyDefs()
	// The coordinator takes its partitions shortly after it starts: until
	// then a start goes out as a command. Wait until one is direct.
	deadline := time.Now().Add(30 * time.Second)
	for {
		before := commandsStored(t, e.js)
		id, err := e.cl.Start(ctx, def, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.wait(id)
		if commandsStored(t, e.js) == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("every start went out as a command")
		}
	}
	before := commandsStored(t, e.js)
	for i := range 20 {
		id, err := e.cl.Start(ctx, def, map[string]int{"i": i}, client.WithIdempotencyKey("direct-"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		if s := e.wait(id); s.Status != client.StatusSucceeded {
			t.Fatalf("saga %s %s", id, s.Status)
		}
	}
	if after := commandsStored(t, e.js); after != before {
		t.Fatalf("%d start commands stored for 20 direct starts", after-before)
	}
}

// TestDirectStartOfAnotherRequestIsRefused: a direct start that reuses a
// saga's id for other params (two clients racing past Start's own check)
// is refused by the coordinator with the reason, not answered "ok".
func TestDirectStartOfAnotherRequestIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	def, _ := keyDefs()
	id, err := e.cl.Start(ctx, def, map[string]int{"amount": 1}, client.WithIdempotencyKey("race"))
	if err != nil {
		t.Fatal(err)
	}
	e.wait(id)
	b, err := events.Encode(events.Event{ID: "start:" + id, Source: "/test", SagaID: id, Time: time.Now().UTC(),
		Data: &events.StartSaga{SagaCreated: events.SagaCreated{Definition: def, Params: json.RawMessage(`{"amount":2}`), IdempotencyKey: "race"}}})
	if err != nil {
		t.Fatal(err)
	}
	subject := streams.StartSubject(streams.Partition(id, testPartitions))
	var answer streams.StartAnswer
	deadline := time.Now().Add(30 * time.Second)
	for answer.Error == "" {
		reply, err := e.nc.Request(subject, b, 5*time.Second)
		if err == nil {
			if err := json.Unmarshal(reply.Data, &answer); err != nil {
				t.Fatalf("answer %s: %v", reply.Data, err)
			}
			if answer.OK {
				t.Fatalf("a start with other params was answered ok")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal: last answer %+v, %v", answer, err)
		}
	}
	if !strings.Contains(answer.Error, "different params") {
		t.Fatalf("refusal %q, want it to say the params differ", answer.Error)
	}
	// Anything but a start is refused on the start subject.
	notStart, _ := events.Encode(events.Event{ID: "x", Source: "/test", SagaID: id, Time: time.Now().UTC(),
		Data: &events.OperatorCommand{Action: events.ActionAbort, Reason: "no"}})
	reply, err := e.nc.RequestWithContext(ctx, subject, notStart)
	if err != nil || !strings.Contains(string(reply.Data), "only saga starts") {
		t.Fatalf("an operator command on the start subject: %v %v", reply, err)
	}
}
