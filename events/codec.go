package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Content types of jetsaga messages.
const (
	// ContentTypeBatch is a saga log message: a JSON array of CloudEvents.
	ContentTypeBatch = "application/cloudevents-batch+json"
	// ContentTypeEvent is one CloudEvent in the JSON structured format.
	ContentTypeEvent = "application/cloudevents+json"
)

// SpecVersion is the CloudEvents version jetsaga speaks.
const SpecVersion = "1.0"

// Event is one CloudEvent with a typed body.
type Event struct {
	// ID is unique per source; see LogEventID, RequestID and ReplyID.
	ID string
	// Source is a URI reference naming the producer (SourceCoordinator…).
	Source string
	// SagaID is the CloudEvents subject: the saga the event is about.
	SagaID string
	// Time is when the event was decided.
	Time time.Time
	// TraceParent carries W3C trace context (CloudEvents distributed
	// tracing extension); empty when there is none.
	TraceParent string
	// Epoch is the writer's lease epoch for the saga's partition, on log
	// events (extension attribute jetsagaepoch; 0 when none). Along one
	// saga's log it never decreases: a decrease would mean a coordinator
	// wrote after a newer owner of the partition had.
	Epoch uint64
	// Data is the body; its EventType is the CloudEvents type.
	Data Data
}

// Type is the CloudEvents type of the event.
func (e Event) Type() Type {
	if e.Data == nil {
		return ""
	}
	return e.Data.EventType()
}

// NodeOf is the node a log event is about: "" for saga-level events
// (and for saga.unwinding, the node whose failure caused it; for
// saga.stuck, the nodes whose undos failed, comma-separated).
func NodeOf(e Event) string {
	switch d := e.Data.(type) {
	case *NodeStarted:
		return d.Node
	case *NodeSucceeded:
		return d.Node
	case *NodeAttemptFailed:
		return d.Node
	case *NodeFailed:
		return d.Node
	case *UndoStarted:
		return d.Node
	case *UndoAttemptFailed:
		return d.Node
	case *UndoFinished:
		return d.Node
	case *UndoFailed:
		return d.Node
	case *SagaStuckV1:
		return d.Node
	case *SagaStuck:
		nodes := make([]string, len(d.Undos))
		for i, u := range d.Undos {
			nodes[i] = u.Node
		}
		return strings.Join(nodes, ", ")
	case *SagaUnwinding:
		return d.Node
	case *OperatorRetry:
		return d.Node
	case *OperatorResolve:
		return d.Node
	case *FaultInjected:
		return d.Node
	case *NodeRepeated:
		return d.Node
	case *UndoRepeated:
		return d.Node
	case *NodeSkipped:
		return d.Node
	case *SignalReceived:
		return d.Node
	case *OperatorSkip:
		return d.Node
	case *SagaWaiting:
		return d.Node
	case *Signal:
		return d.Node
	}
	return ""
}

// LogEventID is the id of the n-th event (from 0) of a saga's log.
func LogEventID(sagaID string, n int) string { return fmt.Sprintf("%s:%d", sagaID, n) }

// RequestID is the id of the request for one attempt of a node's action or
// undo; retried publishes of the same request deduplicate on it.
func RequestID(sagaID, node string, op Op, attempt int) string {
	return fmt.Sprintf("%s:%s:%s:%d", sagaID, node, op, attempt)
}

// ReplyID is the id of the reply to a request.
func ReplyID(requestID string) string { return requestID + ":reply" }

// ParseRequestID splits a request id (RequestID) into its parts; ok is
// false if it is not one.
func ParseRequestID(id string) (sagaID, node string, op Op, attempt int, ok bool) {
	parts := strings.Split(id, ":")
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" {
		return "", "", "", 0, false
	}
	n, err := strconv.Atoi(parts[3])
	if err != nil || n < 1 || (Op(parts[2]) != OpDo && Op(parts[2]) != OpUndo) {
		return "", "", "", 0, false
	}
	return parts[0], parts[1], Op(parts[2]), n, true
}

// ReplyTarget reads, from a reply that does not decode, the request it
// names: its event id must be that request's reply id and its subject the
// request's saga, so that a malformed reply can fail the attempt it
// answers instead of being dropped. ok is false if it names none.
func ReplyTarget(b []byte) (requestID string, ok bool) {
	var w struct {
		ID      string `json:"id"`
		Subject string `json:"subject"`
		Data    struct {
			RequestID string `json:"request_id"`
		} `json:"data"`
	}
	if json.Unmarshal(b, &w) != nil {
		return "", false
	}
	sagaID, _, _, _, ok := ParseRequestID(w.Data.RequestID)
	if !ok || w.Subject != sagaID || w.ID != ReplyID(w.Data.RequestID) {
		return "", false
	}
	return w.Data.RequestID, true
}

// wire is the JSON structured format of a CloudEvent as jetsaga writes it.
type wire struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject,omitempty"`
	Time            string `json:"time,omitempty"`
	DataContentType string `json:"datacontenttype,omitempty"`
	TraceParent     string `json:"traceparent,omitempty"`
	Epoch           string `json:"jetsagaepoch,omitempty"`
	// LogSeq and LogSize are set only by EncodeLogged.
	LogSeq     string          `json:"jetsagalogseq,omitempty"`
	LogSize    string          `json:"jetsagalogsize,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
}

func toWire(e Event) (wire, error) {
	if e.Data == nil {
		return wire{}, fmt.Errorf("events: event %q has no data", e.ID)
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return wire{}, fmt.Errorf("events: encode %s: %w", e.Data.EventType(), err)
	}
	w := wire{SpecVersion: SpecVersion, ID: e.ID, Source: e.Source, Type: string(e.Data.EventType()),
		Subject: e.SagaID, DataContentType: "application/json", TraceParent: e.TraceParent, Data: data}
	if !e.Time.IsZero() {
		w.Time = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.Epoch > 0 {
		w.Epoch = strconv.FormatUint(e.Epoch, 10)
	}
	return w, nil
}

// Encode writes one event as a CloudEvent in the JSON structured format.
func Encode(e Event) ([]byte, error) {
	w, err := toWire(e)
	if err != nil {
		return nil, err
	}
	return json.Marshal(w)
}

// EncodeLogged writes one event of a saga's log alone, as Encode does,
// with two extension attributes that keep the decision it belongs to:
// jetsagalogseq, the number of the log message it was written in (1 for
// the saga's first), and jetsagalogsize, the number of events in that
// message. Events with the same jetsagalogseq were written together, as
// one decision; an export shows the whole decision when that many of them
// are present. Decode ignores both.
func EncodeLogged(e Event, message, size int) ([]byte, error) {
	w, err := toWire(e)
	if err != nil {
		return nil, err
	}
	w.LogSeq, w.LogSize = strconv.Itoa(message), strconv.Itoa(size)
	return json.Marshal(w)
}

// EncodeBatch writes events as one CloudEvents JSON batch: a saga log message.
func EncodeBatch(evs []Event) ([]byte, error) {
	if len(evs) == 0 {
		return nil, fmt.Errorf("events: empty batch")
	}
	ws := make([]wire, len(evs))
	for i, e := range evs {
		w, err := toWire(e)
		if err != nil {
			return nil, err
		}
		ws[i] = w
	}
	return json.Marshal(ws)
}

// Decode reads one CloudEvent. Errors are *DecodeError.
func Decode(b []byte) (Event, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, &DecodeError{Index: -1, Reason: "not a CloudEvent JSON object", Err: err}
	}
	return fromWire(w, -1)
}

// DecodeBatch reads a saga log message: a JSON array of CloudEvents. One bad
// event makes the whole batch an error, so a decision is applied whole or not
// at all. Errors are *DecodeError.
func DecodeBatch(b []byte) ([]Event, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '[' {
		return nil, &DecodeError{Index: -1, Reason: "a log message must be a JSON array of CloudEvents (" + ContentTypeBatch + ")"}
	}
	var ws []wire
	if err := json.Unmarshal(b, &ws); err != nil {
		return nil, &DecodeError{Index: -1, Reason: "malformed CloudEvents batch", Err: err}
	}
	if len(ws) == 0 {
		return nil, &DecodeError{Index: -1, Reason: "empty batch"}
	}
	out := make([]Event, len(ws))
	for i, w := range ws {
		e, err := fromWire(w, i)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

func fromWire(w wire, index int) (Event, error) {
	fail := func(field, reason string, err error) (Event, error) {
		return Event{}, &DecodeError{Index: index, ID: w.ID, Type: w.Type, Field: field, Reason: reason, Err: err}
	}
	switch {
	case w.SpecVersion != SpecVersion:
		return fail("specversion", fmt.Sprintf("is %q, want %q", w.SpecVersion, SpecVersion), nil)
	case w.ID == "":
		return fail("id", "is empty", nil)
	case w.Source == "":
		return fail("source", "is empty", nil)
	case w.Type == "":
		return fail("type", "is empty", nil)
	case w.DataContentType != "" && w.DataContentType != "application/json":
		return fail("datacontenttype", fmt.Sprintf("is %q, want application/json", w.DataContentType), nil)
	case w.DataBase64 != "":
		return fail("data_base64", "binary data is not accepted; send JSON data", nil)
	case len(w.Data) == 0 || w.Data[0] != '{':
		return fail("data", "must be a JSON object", nil)
	}
	if err := uuid.Validate(w.Subject); err != nil || len(w.Subject) != 36 || strings.ToLower(w.Subject) != w.Subject {
		return fail("subject", fmt.Sprintf("%q is not a saga id (a lowercase UUID)", w.Subject), err)
	}
	data, ok := newData(Type(w.Type))
	if !ok {
		return fail("type", "unknown event type", nil)
	}
	e := Event{ID: w.ID, Source: w.Source, SagaID: w.Subject, TraceParent: w.TraceParent, Data: data}
	if w.Epoch != "" {
		n, err := strconv.ParseUint(w.Epoch, 10, 64)
		if err != nil {
			return fail("jetsagaepoch", "is not a whole number", err)
		}
		e.Epoch = n
	}
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return fail("time", "is not an RFC 3339 timestamp", err)
		}
		e.Time = t
	}
	if err := json.Unmarshal(w.Data, data); err != nil {
		return fail("data", "does not match the event type", err)
	}
	if field, reason := data.check(); field != "" {
		return fail(field, reason, nil)
	}
	return e, nil
}

// ChildTraceParent returns a W3C traceparent in the same trace as parent,
// with a span id derived from name (so the same request always gets the
// same span), or "" if parent is not a valid traceparent.
func ChildTraceParent(parent, name string) string {
	// version-traceid(32)-spanid(16)-flags
	if len(parent) != 55 || parent[2] != '-' || parent[35] != '-' || parent[52] != '-' {
		return ""
	}
	h := fnv.New64a()
	h.Write([]byte(parent[3:35]))
	h.Write([]byte(name))
	return fmt.Sprintf("%s-%016x-%s", parent[:35], h.Sum64(), parent[53:])
}
