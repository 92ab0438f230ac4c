package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The saga log's compact message format (version 2).
//
// A log message holds the events of one decision. Every event of a
// decision shares its saga, time, source, epoch and trace context, and
// event ids are positions in the log (LogEventID), so writing each as a
// whole CloudEvent (version 1, a CloudEvents JSON batch) repeats all of it
// per event: about 300 bytes of attributes for an event whose data is 40.
// Version 2 writes the shared attributes once and the three events every
// saga writes most in a positional form:
//
//	[2, n, time, source, epoch, traceparent, event, event, ...]
//
//	n            position of the first event in the saga's log (its id is "<saga id>:<n>")
//	time         the decision's time, Unix nanoseconds
//	source       the coordinator's name (source "/jetsaga/coordinator/<name>"),
//	             or a whole source when it starts with "/"
//	epoch        the writer's lease epoch (jetsagaepoch), 0 for none
//	traceparent  the saga's W3C trace context in the message holding
//	             saga.created; "" in later messages, whose events carry the
//	             saga's (readers take it from saga.created)
//
//	event        ["s", node, attempt, deadline]     node.started.v1; deadline in ns after time
//	             ["ok", node, attempt, output]      node.succeeded.v1
//	             ["end", outcome]                   saga.finished.v1
//	             ["end", outcome, output]
//	             [type, data]                       any other event: its CloudEvents type
//	                                                without "io.jetsaga.", and data as in CloudEvents
//	                                                (saga.created with references only, see SagaCreated)
//
// The saga id is the message's subject. Readers accept both versions
// (DecodeLog); `jetsaga export` turns either into CloudEvents.

// logVersion is the compact format's version, its first element.
const logVersion = 2

// typePrefix begins every jetsaga event type.
const typePrefix = "io.jetsaga."

// Positional codes of the hot events.
const (
	codeStarted   = "s"
	codeSucceeded = "ok"
	codeFinished  = "end"
)

// EncodeLog encodes the events of one decision of saga sagaID as one log
// message, in the compact format when it can hold them exactly: events at
// consecutive positions (ids LogEventID(sagaID, n), n+1, …) that share
// their time, source and epoch, and whose trace context is the saga's
// (sagaTrace; in the message with saga.created, theirs). Anything else is
// written as a CloudEvents batch (EncodeBatch), which holds any events.
func EncodeLog(sagaID, sagaTrace string, evs []Event) ([]byte, error) {
	if len(evs) == 0 {
		return nil, fmt.Errorf("events: empty batch")
	}
	first := evs[0]
	n, ok := logPosition(sagaID, first.ID)
	if !ok || !compactable(sagaID, sagaTrace, n, evs) {
		return EncodeBatch(evs)
	}
	b := make([]byte, 0, 128+64*len(evs))
	b = append(b, '[', '0'+logVersion, ',')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, first.Time.UnixNano(), 10)
	b = append(b, ',')
	src := first.Source
	if name, ok := strings.CutPrefix(src, SourceCoordinator+"/"); ok && name != "" && name[0] != '/' {
		src = name
	}
	b = appendJSONString(b, src)
	b = append(b, ',')
	b = strconv.AppendUint(b, first.Epoch, 10)
	b = append(b, ',')
	tp := ""
	if n == 0 {
		tp = first.TraceParent
	}
	b = appendJSONString(b, tp)
	for _, e := range evs {
		b = append(b, ',')
		var err error
		if b, err = appendLogEvent(b, e); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// compactable reports whether evs fit the compact format exactly.
func compactable(sagaID, sagaTrace string, n uint64, evs []Event) bool {
	first := evs[0]
	if y := first.Time.Year(); y < 1700 || y > 2200 || first.Source == "" { // Unix nanoseconds hold 1678 to 2262
		return false
	}
	trace := sagaTrace
	if n == 0 {
		trace = first.TraceParent
	}
	for i, e := range evs {
		if e.SagaID != sagaID || !isLogEventID(sagaID, e.ID, n+uint64(i)) || !e.Time.Equal(first.Time) ||
			e.Source != first.Source || e.Epoch != first.Epoch || e.TraceParent != trace || e.Data == nil ||
			!strings.HasPrefix(string(e.Data.EventType()), typePrefix) {
			return false
		}
		if i > 0 && e.Type() == TypeSagaCreated {
			return false
		}
	}
	return true
}

// logPosition parses "<sagaID>:<n>".
func logPosition(sagaID, id string) (uint64, bool) {
	if len(id) <= len(sagaID)+1 || id[:len(sagaID)] != sagaID || id[len(sagaID)] != ':' {
		return 0, false
	}
	rest := id[len(sagaID)+1:]
	n, err := strconv.ParseUint(rest, 10, 31)
	return n, err == nil && (rest[0] != '0' || len(rest) == 1) // one spelling per position
}

// isLogEventID reports whether id is LogEventID(sagaID, n), without
// building it.
func isLogEventID(sagaID, id string, n uint64) bool {
	got, ok := logPosition(sagaID, id)
	return ok && got == n
}

func appendLogEvent(b []byte, e Event) ([]byte, error) {
	switch d := e.Data.(type) {
	case *NodeStarted:
		if d.NotBefore.IsZero() && !d.Deadline.IsZero() {
			b = append(b, `["`+codeStarted+`",`...)
			b = appendJSONString(b, d.Node)
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(d.Attempt), 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(d.Deadline.Sub(e.Time)), 10)
			return append(b, ']'), nil
		}
	case *NodeSucceeded:
		if json.Valid(d.Output) {
			b = append(b, `["`+codeSucceeded+`",`...)
			b = appendJSONString(b, d.Node)
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(d.Attempt), 10)
			b = append(b, ',')
			b = append(b, d.Output...)
			return append(b, ']'), nil
		}
	case *SagaFinished:
		if len(d.Output) == 0 || json.Valid(d.Output) {
			b = append(b, `["`+codeFinished+`",`...)
			b = appendJSONString(b, string(d.Outcome))
			if len(d.Output) > 0 {
				b = append(b, ',')
				b = append(b, d.Output...)
			}
			return append(b, ']'), nil
		}
	}
	var v any = e.Data
	if c, ok := e.Data.(*SagaCreated); ok {
		v = c.logged()
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", e.Data.EventType(), err)
	}
	b = append(b, '[')
	b = appendJSONString(b, strings.TrimPrefix(string(e.Data.EventType()), typePrefix))
	b = append(b, ',')
	b = append(b, data...)
	return append(b, ']'), nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// DecodeLog reads one message of saga sagaID's log, in either format: the
// compact one (EncodeLog) or a CloudEvents batch. One bad event makes the
// whole message an error, so a decision is applied whole or not at all.
// Events of a compact message after the first carry no trace context of
// their own: it is the saga's, in saga.created. A rollup (EncodeRollup)
// reads as the events of all its messages. Errors are *DecodeError, or
// wrap one.
func DecodeLog(sagaID string, b []byte) ([]Event, error) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) < 2 || b[0] != '[' || b[1] < '0' || b[1] > '9' {
		return DecodeBatch(b)
	}
	if IsRollup(b) {
		return decodeRollup(sagaID, b)
	}
	var top []json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, &DecodeError{Index: -1, Reason: "malformed log message", Err: err}
	}
	if len(top) < 7 {
		return nil, &DecodeError{Index: -1, Reason: fmt.Sprintf("a log message has %d elements, want at least 7 (version, position, time, source, epoch, trace context, events)", len(top))}
	}
	fail := func(field, reason string, err error) ([]Event, error) {
		return nil, &DecodeError{Index: -1, Field: field, Reason: reason, Err: err}
	}
	if v := string(top[0]); v != strconv.Itoa(logVersion) {
		return fail("version", fmt.Sprintf("is %s, want %d", v, logVersion), nil)
	}
	n, err := strconv.ParseUint(string(top[1]), 10, 31)
	if err != nil {
		return fail("position", "is not a whole number", err)
	}
	ns, err := strconv.ParseInt(string(top[2]), 10, 64)
	if err != nil {
		return fail("time", "is not Unix nanoseconds", err)
	}
	var src, tp string
	if err := json.Unmarshal(top[3], &src); err != nil || src == "" {
		return fail("source", "is not a non-empty string", err)
	}
	if src[0] != '/' {
		src = SourceCoordinator + "/" + src
	}
	epoch, err := strconv.ParseUint(string(top[4]), 10, 64)
	if err != nil {
		return fail("epoch", "is not a whole number", err)
	}
	if err := json.Unmarshal(top[5], &tp); err != nil {
		return fail("traceparent", "is not a string", err)
	}
	at := time.Unix(0, ns).UTC()
	evs := make([]Event, 0, len(top)-6)
	for i, raw := range top[6:] {
		e := Event{ID: LogEventID(sagaID, int(n)+i), Source: src, SagaID: sagaID, Time: at, TraceParent: tp, Epoch: epoch}
		if e.Data, err = decodeLogEvent(raw, at, i, e.ID); err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

func decodeLogEvent(raw json.RawMessage, at time.Time, index int, id string) (Data, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) < 2 {
		return nil, &DecodeError{Index: index, ID: id, Reason: "an event must be an array of its type or code and its fields", Err: err}
	}
	var code string
	if err := json.Unmarshal(parts[0], &code); err != nil {
		return nil, &DecodeError{Index: index, ID: id, Reason: "an event's first element must be its type or code", Err: err}
	}
	fail := func(t Type, field, reason string, err error) (Data, error) {
		return nil, &DecodeError{Index: index, ID: id, Type: string(t), Field: field, Reason: reason, Err: err}
	}
	var data Data
	switch code {
	case codeStarted, codeSucceeded:
		t := TypeNodeSucceeded
		if code == codeStarted {
			t = TypeNodeStarted
		}
		if len(parts) != 4 {
			return fail(t, "", fmt.Sprintf("has %d elements, want 4", len(parts)), nil)
		}
		var node string
		if err := json.Unmarshal(parts[1], &node); err != nil {
			return fail(t, "data.node", "is not a string", err)
		}
		attempt, err := strconv.Atoi(string(parts[2]))
		if err != nil {
			return fail(t, "data.attempt", "is not a whole number", err)
		}
		if code == codeStarted {
			delta, err := strconv.ParseInt(string(parts[3]), 10, 64)
			if err != nil {
				return fail(t, "data.deadline", "is not nanoseconds", err)
			}
			data = &NodeStarted{Node: node, Attempt: attempt, Deadline: at.Add(time.Duration(delta))}
		} else {
			data = &NodeSucceeded{Node: node, Attempt: attempt, Output: json.RawMessage(parts[3])}
		}
	case codeFinished:
		if len(parts) > 3 {
			return fail(TypeSagaFinished, "", fmt.Sprintf("has %d elements, want 2 or 3", len(parts)), nil)
		}
		d := &SagaFinished{}
		if err := json.Unmarshal(parts[1], &d.Outcome); err != nil {
			return fail(TypeSagaFinished, "data.outcome", "is not a string", err)
		}
		if len(parts) == 3 {
			d.Output = json.RawMessage(parts[2])
		}
		data = d
	default:
		if len(parts) != 2 {
			return nil, &DecodeError{Index: index, ID: id, Type: code, Reason: fmt.Sprintf("has %d elements, want 2 (type and data)", len(parts))}
		}
		t := Type(typePrefix + code)
		d, ok := newData(t)
		if !ok {
			return fail(t, "type", "unknown event type", nil)
		}
		if len(parts[1]) == 0 || parts[1][0] != '{' {
			return fail(t, "data", "must be a JSON object", nil)
		}
		if err := json.Unmarshal(parts[1], d); err != nil {
			return fail(t, "data", "does not match the event type", err)
		}
		data = d
	}
	if field, reason := data.check(); field != "" {
		return fail(data.EventType(), field, reason, nil)
	}
	return data, nil
}
