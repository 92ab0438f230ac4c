package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
)

const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// decision gives bodies the shared attributes of one decision of sagaID,
// from position n.
func decision(n int, at time.Time, source string, epoch uint64, bodies ...events.Data) []events.Event {
	out := make([]events.Event, len(bodies))
	for i, b := range bodies {
		out[i] = events.Event{ID: events.LogEventID(sagaID, n+i), Source: source, SagaID: sagaID, Time: at, Data: b, TraceParent: trace, Epoch: epoch}
	}
	return out
}

// logEvents are the log events of allEvents (not the commands and
// participant messages).
func logEvents(t *testing.T) []events.Data {
	var out []events.Data
	for _, e := range allEvents() {
		switch e.Data.(type) {
		case *events.StartSaga, *events.OperatorCommand, *events.ActionRequest, *events.ActionReply:
		default:
			out = append(out, e.Data)
		}
	}
	if len(out) < 15 {
		t.Fatalf("only %d log events", len(out))
	}
	return out
}

func TestLogRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 18, 17, 43, 296155907, time.UTC)
	bodies := logEvents(t)
	for _, source := range []string{events.SourceCoordinator + "/dev-1", "/elsewhere/writer"} {
		// saga.created first, then every other event alone and all of
		// them in one message.
		msgs := [][]events.Event{decision(0, at, source, 7, bodies[0])}
		n := 1
		for _, b := range bodies[1:] {
			msgs = append(msgs, decision(n, at.Add(time.Duration(n)*time.Millisecond), source, 7, b))
			n++
		}
		msgs = append(msgs, decision(n, at, source, 9, bodies[1:]...))
		for _, want := range msgs {
			b, err := events.EncodeLog(sagaID, trace, want)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), "[2,") {
				t.Fatalf("%s: not the compact format: %s", want[0].Type(), b)
			}
			got, err := events.DecodeLog(sagaID, b)
			if err != nil {
				t.Fatalf("%s: %v\n%s", want[0].Type(), err, b)
			}
			if want[0].ID != events.LogEventID(sagaID, 0) {
				for i := range got { // later messages leave the trace to saga.created
					if got[i].TraceParent != "" {
						t.Fatalf("event %s has trace context %q in a later message", got[i].ID, got[i].TraceParent)
					}
					got[i].TraceParent = trace
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip of %s:\n got %+v\nwant %+v\n%s", want[0].Type(), got, want, b)
			}
		}
	}
}

// TestLogIsSmall pins the point of the compact format: the hot events of
// a step (succeeded + the next started) take a fraction of a batch.
func TestLogIsSmall(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 18, 17, 43, 296155907, time.UTC)
	step := decision(2, at, events.SourceCoordinator+"/dev", 7,
		&events.NodeSucceeded{Node: "flight", Attempt: 1, Output: json.RawMessage(`{"ref":"F1"}`)},
		&events.NodeStarted{Node: "hotel", Attempt: 1, Deadline: at.Add(30 * time.Second)})
	compact, err := events.EncodeLog(sagaID, trace, step)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := events.EncodeBatch(step)
	if err != nil {
		t.Fatal(err)
	}
	want := `[2,2,1795976263296155907,"dev",7,"",["ok","flight",1,{"ref":"F1"}],["s","hotel",1,30000000000]]`
	if string(compact) != want {
		t.Fatalf("compact step:\n got %s\nwant %s", compact, want)
	}
	if len(compact)*5 > len(batch) {
		t.Fatalf("compact step %d bytes, batch %d: want at most a fifth", len(compact), len(batch))
	}
}

// TestLogFallsBackToBatch: events the compact format cannot hold exactly
// are written as a CloudEvents batch, which DecodeLog reads too.
func TestLogFallsBackToBatch(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	started := func() events.Data { return &events.NodeStarted{Node: "a", Attempt: 1, Deadline: at.Add(time.Second)} }
	cases := map[string][]events.Event{
		"times differ":     append(decision(1, at, events.SourceCoordinator+"/x", 1, started()), decision(2, at.Add(1), events.SourceCoordinator+"/x", 1, started())...),
		"epochs differ":    append(decision(1, at, events.SourceCoordinator+"/x", 1, started()), decision(2, at, events.SourceCoordinator+"/x", 2, started())...),
		"not consecutive":  append(decision(1, at, events.SourceCoordinator+"/x", 1, started()), decision(3, at, events.SourceCoordinator+"/x", 1, started())...),
		"other trace":      func() []events.Event { e := decision(1, at, "/x", 1, started()); e[0].TraceParent = ""; return e }(),
		"id not positions": func() []events.Event { e := decision(1, at, "/x", 1, started()); e[0].ID = "other"; return e }(),
	}
	for name, evs := range cases {
		b, err := events.EncodeLog(sagaID, trace, evs)
		if err != nil {
			t.Fatal(err)
		}
		if b[1] != '{' {
			t.Fatalf("%s: want a CloudEvents batch, got %s", name, b)
		}
		got, err := events.DecodeLog(sagaID, b)
		if err != nil || !reflect.DeepEqual(got, evs) {
			t.Fatalf("%s: round trip = %+v, %v; want %+v", name, got, err, evs)
		}
	}
}

func TestLogDecodeErrorsSayWhatAndWhere(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`[2,0,1,"x",0,""]`:                             "at least 7",
		`[4,0,1,"x",0,"",["s","a",1,5]]`:               "version: is 4",
		`[2,-1,1,"x",0,"",["s","a",1,5]]`:              "position",
		`[2,0,"t","x",0,"",["s","a",1,5]]`:             "time",
		`[2,0,1,"",0,"",["s","a",1,5]]`:                "source",
		`[2,0,1,"x",0,"",["s","a",0,5]]`:               "data.attempt: is 0",
		`[2,0,1,"x",0,"",["s","",1,5]]`:                "data.node: is empty",
		`[2,0,1,"x",0,"",["s","a",1]]`:                 "want 4",
		`[2,0,1,"x",0,"",["ok","a",1,{}],["nope",{}]]`: "event 1 of batch",
		`[2,0,1,"x",0,"",["node.nope.v1",{}]]`:         "unknown event type",
		`[2,0,1,"x",0,"",["saga.finished.v1",[]]]`:     "must be a JSON object",
		`[2,0,1,"x",0,"",{"s":1}]`:                     "an event must be an array",
		`[2,0,1,"x",0,"",["end","succeeded",1,2]]`:     "want 2 or 3",
		`[2,0,1,"x",0,"",["s","a",1,5]`:                "malformed",
	}
	for in, want := range cases {
		_, err := events.DecodeLog(sagaID, []byte(in))
		if err == nil || !errors.Is(err, events.ErrDecode) || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeLog(%s) = %v, want an error mentioning %q", in, err, want)
		}
	}
}

func FuzzDecodeLog(f *testing.F) {
	at := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	for _, b := range logEventsF() {
		m, err := events.EncodeLog(sagaID, trace, decision(1, at, events.SourceCoordinator+"/f", 3, b))
		if err == nil {
			f.Add(m)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := events.DecodeLog(sagaID, b)
		if err != nil {
			return
		}
		// What decodes encodes again and decodes to the same events.
		again, err := events.EncodeLog(sagaID, evs[0].TraceParent, evs)
		if err != nil {
			t.Fatalf("decoded events do not encode: %v", err)
		}
		if round, err := events.DecodeLog(sagaID, again); err != nil || len(round) != len(evs) {
			t.Fatalf("re-encoded %s does not decode: %v", again, err)
		}
	})
}

func logEventsF() []events.Data {
	var out []events.Data
	for _, e := range allEvents() {
		out = append(out, e.Data)
	}
	return out
}

// TestCreatedRefersToWhatItHolds: the log holds references only, and a
// message holding both a definition and a reference must have them agree
// (readers go by the reference).
func TestCreatedRefersToWhatItHolds(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	c := logEvents(t)[0].(*events.SagaCreated)
	_, ref, err := events.DefinitionDoc(c.Definition)
	if err != nil {
		t.Fatal(err)
	}
	withRef := *c
	withRef.DefinitionRef = ref
	b, err := events.EncodeLog(sagaID, trace, decision(0, at, "/x", 1, &withRef))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"nodes"`) || !strings.Contains(string(b), ref) {
		t.Fatalf("the compact log must hold the reference, not the definition: %s", b)
	}
	evs, err := events.DecodeLog(sagaID, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := evs[0].Data.(*events.SagaCreated); !got.Unresolved() || got.DefinitionRef != ref {
		t.Fatalf("decoded %+v, want the reference alone", got)
	}
	// A batch holds both; a reference to something else is refused.
	wrong := withRef
	wrong.DefinitionRef = events.Ref([]byte("another"))
	bad, err := events.EncodeBatch(decision(0, at, "/x", 1, &wrong))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.DecodeLog(sagaID, bad); err == nil || !strings.Contains(err.Error(), "data.definition_ref") {
		t.Fatalf("a reference that does not name the definition: %v", err)
	}
	if good, _ := events.EncodeBatch(decision(0, at, "/x", 1, &withRef)); good != nil {
		if _, err := events.DecodeLog(sagaID, good); err != nil {
			t.Fatalf("a batch with the definition and its reference: %v", err)
		}
	}
}
