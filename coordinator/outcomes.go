package coordinator

import (
	"time"

	"github.com/jetsaga/jetsaga/events"
)

// requestOutcome is what a decision says became of one request: the node,
// op and attempt it was for, and its error if it failed ("" if it
// succeeded).
type requestOutcome struct {
	node    string
	op      events.Op
	attempt int
	failed  string
	at      time.Time
}

// requestOutcomes lists the request outcomes in a decision's events, for
// the latency metrics and the node spans.
func requestOutcomes(evs []events.Event) []requestOutcome {
	var out []requestOutcome
	add := func(node string, op events.Op, attempt int, e *events.Error, at time.Time) {
		o := requestOutcome{node: node, op: op, attempt: attempt, at: at}
		if e != nil {
			o.failed = e.String()
		}
		out = append(out, o)
	}
	for _, e := range evs {
		switch d := e.Data.(type) {
		case *events.NodeSucceeded:
			add(d.Node, events.OpDo, d.Attempt, nil, e.Time)
		case *events.NodeRepeated:
			add(d.Node, events.OpDo, d.Attempt, nil, e.Time)
		case *events.NodeAttemptFailed:
			add(d.Node, events.OpDo, d.Attempt, &d.Error, e.Time)
		case *events.NodeFailed:
			add(d.Node, events.OpDo, d.Attempt, &d.Error, e.Time)
		case *events.UndoFinished:
			add(d.Node, events.OpUndo, d.Attempt, nil, e.Time)
		case *events.UndoRepeated:
			add(d.Node, events.OpUndo, d.Attempt, nil, e.Time)
		case *events.UndoAttemptFailed:
			add(d.Node, events.OpUndo, d.Attempt, &d.Error, e.Time)
		case *events.UndoFailed:
			add(d.Node, events.OpUndo, d.Attempt, &d.Error, e.Time)
		}
	}
	return out
}
