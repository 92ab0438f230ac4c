package events

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// A rollup restates a finished saga's whole log as one message:
//
//	[3, message, message, ...]
//
// each message exactly as it was appended (compact or CloudEvents batch),
// oldest first. The coordinator appends a saga's last decision as a
// rollup (the stream then drops the messages it restates) and archives
// the same bytes, so a finished saga is one message wherever it is read.
// DecodeLog reads a rollup as all its messages' events; SplitRollup keeps
// the messages apart, for readers that applied some of them already.

// rollupVersion is a rollup's first element.
const rollupVersion = 3

// EncodeRollup restates msgs, a saga's log messages oldest first, as one
// rollup. A rollup among them (a log read back after its last decision)
// is taken apart, so rollups never nest.
func EncodeRollup(msgs [][]byte) ([]byte, error) {
	if len(msgs) == 0 {
		return nil, fmt.Errorf("events: a rollup of no messages")
	}
	size := 4
	for _, m := range msgs {
		size += len(m) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, '[', '0'+rollupVersion)
	for i, m := range msgs {
		inner, ok, err := SplitRollup(m)
		if err != nil {
			return nil, fmt.Errorf("events: rollup message %d: %w", i, err)
		}
		if !ok {
			inner = [][]byte{m}
		}
		for _, m := range inner {
			m = bytes.TrimSpace(m)
			if len(m) == 0 || m[0] != '[' || !json.Valid(m) {
				return nil, fmt.Errorf("events: rollup message %d is not a log message (a JSON array)", i)
			}
			b = append(b, ',')
			b = append(b, m...)
		}
	}
	return append(b, ']'), nil
}

// IsRollup reports whether b is a rollup (by its version; SplitRollup
// checks the rest).
func IsRollup(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) < 2 || b[0] != '[' {
		return false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	return len(b) >= 2 && b[0] == '0'+rollupVersion && (b[1] == ',' || b[1] == ']' || b[1] == ' ')
}

// SplitRollup returns the messages rollup b restates, oldest first, and
// true; false if b is not a rollup. Each message is one log message
// (DecodeLog reads it).
func SplitRollup(b []byte) ([][]byte, bool, error) {
	if !IsRollup(b) {
		return nil, false, nil
	}
	var top []json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, true, &DecodeError{Index: -1, Reason: "malformed rollup", Err: err}
	}
	if len(top) < 2 {
		return nil, true, &DecodeError{Index: -1, Reason: "a rollup restates no messages"}
	}
	out := make([][]byte, 0, len(top)-1)
	for i, m := range top[1:] {
		if IsRollup(m) {
			return nil, true, &DecodeError{Index: -1, Field: fmt.Sprintf("message %d", i), Reason: "is a rollup inside a rollup"}
		}
		out = append(out, m)
	}
	return out, true, nil
}

// decodeRollup reads every event of rollup b, in order.
func decodeRollup(sagaID string, b []byte) ([]Event, error) {
	msgs, _, err := SplitRollup(b)
	if err != nil {
		return nil, err
	}
	var evs []Event
	for i, m := range msgs {
		part, err := DecodeLog(sagaID, m)
		if err != nil {
			return nil, fmt.Errorf("rollup message %d: %w", i, err)
		}
		evs = append(evs, part...)
	}
	return evs, nil
}
