package events

import (
	"errors"
	"fmt"
	"strings"
)

// ErrDecode is matched (errors.Is) by every *DecodeError.
var ErrDecode = errors.New("events: cannot decode")

// DecodeError says why a message could not be decoded.
type DecodeError struct {
	// Index is the event's position in a batch; -1 for a single event or
	// when the batch itself is malformed.
	Index int
	// ID and Type are the event's attributes, when they could be read.
	ID, Type string
	// Field is the attribute ("type") or data field ("data.node") at fault;
	// empty when the whole message is.
	Field string
	// Reason says what was wrong.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("events: cannot decode")
	if e.Index >= 0 {
		fmt.Fprintf(&b, " event %d of batch", e.Index)
	}
	var attrs []string
	if e.ID != "" {
		attrs = append(attrs, "id "+e.ID)
	}
	if e.Type != "" {
		attrs = append(attrs, "type "+e.Type)
	}
	if len(attrs) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(attrs, ", "))
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %s", e.Reason)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDecode) true.
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }
