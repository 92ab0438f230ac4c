package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

const sagaID = "0b9a8e4c-5c1f-4f5e-9d57-3f2f4f3b7d10"

func allEvents() []events.Event {
	def := saga.New("trip").Then(saga.Action("flight", "flights.book").Undo("flights.cancel")).MustBuild()
	now := time.Date(2026, 11, 24, 5, 0, 0, 123456789, time.UTC)
	bodies := []events.Data{
		&events.SagaCreated{Definition: def, Params: json.RawMessage(`{"who":"ada"}`), IdempotencyKey: "k1", Metadata: map[string]string{"team": "travel"}},
		&events.NodeStarted{Node: "flight", Attempt: 1, Deadline: now.Add(time.Second)},
		&events.NodeAttemptFailed{Node: "flight", Attempt: 1, Error: events.Error{Kind: events.ErrorTimeout, Message: "no reply"}, RetryAt: now.Add(2 * time.Second)},
		&events.NodeSucceeded{Node: "flight", Attempt: 2, Output: json.RawMessage(`{"seat":"12A"}`)},
		&events.NodeFailed{Node: "flight", Attempt: 3, Error: events.Error{Kind: events.ErrorPermanent, Message: "sold out"}},
		&events.SagaUnwinding{Reason: events.UnwindNodeFailed, Node: "flight"},
		&events.UndoStarted{Node: "flight", Attempt: 1},
		&events.UndoAttemptFailed{Node: "flight", Attempt: 1, Error: events.Error{Kind: events.ErrorTransient, Message: "busy"}, RetryAt: now},
		&events.UndoFailed{Node: "flight", Attempt: 2, Error: events.Error{Kind: events.ErrorRetriesExhausted, Message: "busy"}},
		&events.SagaStuck{Undos: []events.FailedUndo{{Node: "flight", Error: events.Error{Kind: events.ErrorRetriesExhausted, Message: "busy"}}}},
		&events.SagaStuckV1{Node: "flight", Error: events.Error{Kind: events.ErrorRetriesExhausted, Message: "busy"}},
		&events.OperatorRetry{Node: "flight", Operator: "ops", Reason: "fixed"},
		&events.OperatorResolve{Node: "flight", Operator: "ops", Reason: "refunded by hand"},
		&events.UndoFinished{Node: "flight", Attempt: 1},
		&events.OperatorAbort{Reason: "customer cancelled"},
		&events.OperatorAbandon{Reason: "test saga"},
		&events.SagaFinished{Outcome: events.OutcomeSucceeded, Output: json.RawMessage(`{"seat":"12A"}`)},
		&events.StartSaga{SagaCreated: events.SagaCreated{Definition: def, Params: json.RawMessage(`{"who":"ada"}`), IdempotencyKey: "k1"}},
		&events.OperatorCommand{Action: events.ActionResolve, Node: "flight", Operator: "ops", Reason: "refunded"},
		&events.ActionRequest{Op: events.OpDo, Node: "flight", Action: "flights.book", Undo: "flights.cancel", Attempt: 1,
			IdempotencyKey: sagaID + ":flight", Params: json.RawMessage(`{}`), Outputs: map[string]json.RawMessage{"x": json.RawMessage(`1`)}, ReplyTo: "jetsaga.reply.3"},
		&events.ActionReply{RequestID: "r", Op: events.OpDo, Node: "flight", Attempt: 1, OK: false,
			Error: &events.Error{Kind: events.ErrorTransient, Message: "later"}, RetryAfter: saga.Duration(time.Second)},
	}
	out := make([]events.Event, len(bodies))
	for i, b := range bodies {
		out[i] = events.Event{ID: events.LogEventID(sagaID, i), Source: events.SourceCoordinator, SagaID: sagaID, Time: now, Data: b,
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Epoch: uint64(i + 1)}
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	t.Parallel()
	evs := allEvents()
	b, err := events.EncodeBatch(evs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, evs) {
		for i := range evs {
			if !reflect.DeepEqual(got[i], evs[i]) {
				t.Errorf("event %d differs:\n got %#v\nwant %#v", i, got[i].Data, evs[i].Data)
			}
		}
	}
}

// The CloudEvents SDK is the oracle for the format: what we write it reads
// and validates, and what it writes we read.
func TestCloudEventsSDKConformance(t *testing.T) {
	t.Parallel()
	for _, e := range allEvents() {
		b, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		var ce cloudevents.Event
		if err := json.Unmarshal(b, &ce); err != nil {
			t.Fatalf("SDK cannot read %s: %v", e.Type(), err)
		}
		if err := ce.Validate(); err != nil {
			t.Fatalf("SDK says %s is invalid: %v", e.Type(), err)
		}
		if ce.Type() != string(e.Type()) || ce.Subject() != sagaID || ce.ID() != e.ID || !ce.Time().Equal(e.Time) {
			t.Fatalf("SDK read different attributes: %v", ce)
		}
		if tp, _ := ce.Extensions()["traceparent"].(string); tp != e.TraceParent {
			t.Fatalf("traceparent = %q", tp)
		}
		// And back: the SDK's encoding decodes to the same event.
		sb, err := json.Marshal(ce)
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.Decode(sb)
		if err != nil {
			t.Fatalf("decode SDK encoding of %s: %v\n%s", e.Type(), err, sb)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("SDK round trip of %s differs:\n got %#v\nwant %#v", e.Type(), got, e)
		}
	}
}

func TestDecodeErrorsSayWhatAndWhere(t *testing.T) {
	t.Parallel()
	good := `{"specversion":"1.0","id":"x","source":"/s","type":"io.jetsaga.node.started.v1","subject":"` + sagaID + `","data":{"node":"a","attempt":1}}`
	if _, err := events.Decode([]byte(good)); err != nil {
		t.Fatalf("good event: %v", err)
	}
	cases := []struct {
		name, in, want string
	}{
		{"malformed json", `{"specversion":`, "not a CloudEvent JSON object"},
		{"wrong spec", strings.Replace(good, `"1.0"`, `"0.3"`, 1), `specversion: is "0.3", want "1.0"`},
		{"no id", strings.Replace(good, `"id":"x"`, `"id":""`, 1), "id: is empty"},
		{"no source", strings.Replace(good, `"source":"/s"`, `"source":""`, 1), "source: is empty"},
		{"unknown type", strings.Replace(good, "node.started", "node.exploded", 1), "(id x, type io.jetsaga.node.exploded.v1): type: unknown event type"},
		{"bad subject", strings.Replace(good, sagaID, "not-a-uuid", 1), `subject: "not-a-uuid" is not a saga id`},
		{"upper subject", strings.Replace(good, sagaID, strings.ToUpper(sagaID), 1), "is not a saga id"},
		{"no data", strings.Replace(good, `,"data":{"node":"a","attempt":1}`, "", 1), "data: must be a JSON object"},
		{"binary data", strings.Replace(good, `"data":{"node":"a","attempt":1}`, `"data_base64":"AAA="`, 1), "data_base64"},
		{"wrong data", strings.Replace(good, `"attempt":1`, `"attempt":"one"`, 1), "data: does not match the event type"},
		{"missing field", strings.Replace(good, `"node":"a"`, `"node":""`, 1), "data.node: is empty"},
		{"bad attempt", strings.Replace(good, `"attempt":1`, `"attempt":0`, 1), "data.attempt: is 0"},
		{"bad time", strings.Replace(good, `"subject"`, `"time":"yesterday","subject"`, 1), "time: is not an RFC 3339 timestamp"},
		{"bad content type", strings.Replace(good, `"subject"`, `"datacontenttype":"text/xml","subject"`, 1), "datacontenttype"},
	}
	for _, c := range cases {
		_, err := events.Decode([]byte(c.in))
		var de *events.DecodeError
		if !errors.As(err, &de) || !errors.Is(err, events.ErrDecode) {
			t.Errorf("%s: err = %v, want *DecodeError", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q lacks %q", c.name, err, c.want)
		}
	}

	// In a batch the error names the position.
	_, err := events.DecodeBatch([]byte("[" + good + "," + strings.Replace(good, `"node":"a"`, `"node":""`, 1) + "]"))
	var de *events.DecodeError
	if !errors.As(err, &de) || de.Index != 1 || !strings.Contains(err.Error(), "event 1 of batch") {
		t.Fatalf("batch err = %v", err)
	}
	for _, in := range []string{good, "[]", "", "[1,2]"} {
		if _, err := events.DecodeBatch([]byte(in)); !errors.Is(err, events.ErrDecode) {
			t.Errorf("DecodeBatch(%q) = %v", in, err)
		}
	}
}

func TestReplyMustBeCoherent(t *testing.T) {
	t.Parallel()
	mk := func(r events.ActionReply) error {
		b, err := events.Encode(events.Event{ID: "i", Source: "/p", SagaID: sagaID, Data: &r})
		if err != nil {
			t.Fatal(err)
		}
		_, err = events.Decode(b)
		return err
	}
	base := events.ActionReply{RequestID: "r", Op: events.OpDo, Node: "a", Attempt: 1, OK: true}
	if err := mk(base); err != nil {
		t.Fatal(err)
	}
	bad := base
	bad.Error = &events.Error{Kind: events.ErrorPermanent}
	if err := mk(bad); err == nil || !strings.Contains(err.Error(), "data.error: is set on a successful reply") {
		t.Errorf("err = %v", err)
	}
	bad = base
	bad.OK = false
	if err := mk(bad); err == nil || !strings.Contains(err.Error(), "missing on a failed reply") {
		t.Errorf("err = %v", err)
	}
	bad.Error = &events.Error{Kind: events.ErrorOutcomeUnknown}
	if err := mk(bad); err == nil || !strings.Contains(err.Error(), "data.error.kind") {
		t.Errorf("a participant cannot claim outcome_unknown: %v", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	b, _ := events.EncodeBatch(allEvents())
	f.Add(b)
	f.Add([]byte(`[{"specversion":"1.0"}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, err := events.DecodeBatch(in)
		if err != nil {
			if !errors.Is(err, events.ErrDecode) {
				t.Fatalf("error is not a DecodeError: %v", err)
			}
			return
		}
		// What decodes must encode and decode to the same events.
		out, err := events.EncodeBatch(evs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := events.DecodeBatch(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(evs) {
			t.Fatalf("re-decode has %d events, want %d", len(again), len(evs))
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, e := range allEvents() {
		b, _ := events.Encode(e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := events.Decode(in); err != nil && !errors.Is(err, events.ErrDecode) {
			t.Fatalf("error is not a DecodeError: %v", err)
		}
	})
}
