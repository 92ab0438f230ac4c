package saga

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("saga: invalid definition")

// Problem is one thing wrong with a definition.
type Problem struct {
	// Node is the path of the node involved ("" for the definition itself);
	// nodes of subsagas are written "sub/node".
	Node string
	// Msg says what is wrong.
	Msg string
}

func (p Problem) String() string {
	if p.Node == "" {
		return p.Msg
	}
	return fmt.Sprintf("node %q: %s", p.Node, p.Msg)
}

// ValidationError lists every problem found in a definition at once.
type ValidationError struct {
	Saga     string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "saga %q is invalid (%d problem", e.Saga, len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString(")")
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// ErrUnknownNode is returned when a node name does not exist in a graph.
var ErrUnknownNode = errors.New("saga: unknown node")
