package client

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

// Saga states.
const (
	StatusRunning   = string(machine.StatusRunning)
	StatusUnwinding = string(machine.StatusUnwinding)
	StatusStuck     = string(machine.StatusStuck)
	// StatusWaiting: a node failed and its failure policy holds the saga
	// for an operator (Retry, Skip or Abort).
	StatusWaiting   = string(machine.StatusWaiting)
	StatusSucceeded = string(machine.StatusSucceeded)
	StatusUnwound   = string(machine.StatusUnwound)
	StatusAbandoned = string(machine.StatusAbandoned)
)

// Saga is a saga's status, folded from its log.
type Saga struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	// Paused: an operator (or a passed deadline) paused the saga; no node
	// starts until resumed.
	Paused bool `json:"paused,omitempty"`
	// Held lists the failed nodes a waiting saga waits on an operator for.
	Held []string `json:"held,omitempty"`
	// Pivot is the pivot node the saga has passed, if any: it no longer
	// unwinds.
	Pivot string `json:"pivot,omitempty"`
	// Deadline is when the saga's deadline passes (zero: none), and
	// DeadlinePassed whether it has.
	Deadline       time.Time       `json:"deadline,omitzero"`
	DeadlinePassed bool            `json:"deadline_passed,omitempty"`
	Params         json.RawMessage `json:"params"`
	// Output is the saga's output once it has succeeded.
	Output         json.RawMessage   `json:"output,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	// UnwindReason and FailedNode say why the saga unwinds.
	UnwindReason string    `json:"unwind_reason,omitempty"`
	FailedNode   string    `json:"failed_node,omitempty"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
	Nodes        []Node    `json:"nodes"`
	Timeline     []Entry   `json:"timeline"`
	// Definition is the saga's DAG as stored in its log.
	Definition *saga.Definition `json:"definition"`
	// Operations are what operators (and signals' senders) did to the
	// saga, oldest first, with who and why.
	Operations []Operation `json:"operations,omitempty"`
}

// Operation is an operator's command (or a signal) in a saga's log.
type Operation struct {
	Time time.Time `json:"time"`
	// What is the event type without prefix: "operator.pause",
	// "signal.received", "fault.injected"...
	What     string `json:"what"`
	Node     string `json:"node,omitempty"`
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Finished reports whether the saga has ended.
func (s *Saga) Finished() bool {
	return s.Status == StatusSucceeded || s.Status == StatusUnwound || s.Status == StatusAbandoned
}

// Node returns the node with the given path.
func (s *Saga) Node(path string) (Node, bool) {
	for _, n := range s.Nodes {
		if n.Path == path {
			return n, true
		}
	}
	return Node{}, false
}

// Node is a node's status.
type Node struct {
	Path        string          `json:"path"`
	Kind        string          `json:"kind"`
	Action      string          `json:"action,omitempty"`
	Undo        string          `json:"undo,omitempty"`
	Parents     []string        `json:"parents,omitempty"`
	State       string          `json:"state"`
	Attempt     int             `json:"attempt,omitempty"`
	UndoAttempt int             `json:"undo_attempt,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
	Error       *events.Error   `json:"error,omitempty"`
	// Resolved is an operator's reason for treating a failed undo as done.
	Resolved string `json:"resolved,omitempty"`
	// Fault is the fault injected into the node, if any.
	Fault *events.Fault `json:"fault,omitempty"`
	// Event is what an await node waits for; Signal the signal it took.
	Event  string                 `json:"event,omitempty"`
	Signal *events.SignalReceived `json:"signal,omitempty"`
	// When is the node's condition; a skipped node's state is "skipped".
	When  string `json:"when,omitempty"`
	Pivot bool   `json:"pivot,omitempty"`
	// OnFailure is the node's failure policy (unwind or pause).
	OnFailure string `json:"on_failure,omitempty"`
	// Held: the node failed and holds the saga for an operator.
	Held bool `json:"held,omitempty"`
	// SkippedBy is the operator's reason when a failed node was skipped.
	SkippedBy string `json:"skipped_by,omitempty"`
}

// Entry is one event of the timeline.
type Entry struct {
	// Seq is the sequence of the stored message holding the event; Message
	// is the event's log message, 1 for the saga's first (a finished
	// saga's messages are one stored rollup, so they share a Seq).
	Seq     uint64    `json:"seq"`
	Message int       `json:"message"`
	Time    time.Time `json:"time"`
	// Type is the event type without prefix and version: "node.succeeded".
	Type string `json:"type"`
	Node string `json:"node,omitempty"`
}

func view(s *machine.State, evs []LogEvent) *Saga {
	v := &Saga{ID: s.SagaID, Status: string(s.Status), Paused: s.Paused, Output: s.Output, Updated: s.Updated,
		Deadline: s.Deadline, DeadlinePassed: s.DeadlinePassed}
	if s.Created != nil {
		v.Name, v.Params, v.Definition = s.Created.Definition.Name, s.Created.Params, s.Created.Definition
		v.IdempotencyKey, v.Metadata = s.Created.IdempotencyKey, s.Created.Metadata
	}
	if s.Unwinding != nil {
		v.UnwindReason, v.FailedNode = string(s.Unwinding.Reason), s.Unwinding.Node
	}
	if s.Graph != nil {
		v.Held, v.Pivot = s.Held(), s.PastPivot()
		for i, g := range s.Graph.Nodes {
			n := s.Nodes[i]
			node := Node{Path: g.Path, Kind: string(g.Kind), State: string(n.State), Attempt: n.Attempt, UndoAttempt: n.UndoAttempt,
				Output: n.Output, Error: n.Error, Resolved: n.Resolved, Fault: n.Fault, Signal: n.Signal, Held: n.Held, SkippedBy: n.SkippedBy,
				Pivot: g.Spec.Pivot && g.Kind != saga.KindSubsagaStart, OnFailure: string(g.OnFailure)}
			if g.When != nil {
				node.When = g.When.Expr
			}
			switch g.Kind {
			case saga.KindAction:
				node.Action, node.Undo = g.Spec.Action, g.Spec.Undo
			case saga.KindAwait:
				node.Event, node.Undo = g.Spec.Event, g.Spec.Undo
			}
			for _, p := range g.Parents {
				node.Parents = append(node.Parents, s.Graph.Nodes[p].Path)
			}
			v.Nodes = append(v.Nodes, node)
		}
	}
	for i, e := range evs {
		if i == 0 {
			v.Created = e.Time
		}
		op := Operation{Time: e.Time, What: ShortType(e.Type()), Node: events.NodeOf(e.Event)}
		switch d := e.Data.(type) {
		case *events.OperatorAbort:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.OperatorRetry:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.OperatorResolve:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.OperatorAbandon:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.OperatorPause:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.OperatorResume:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.OperatorSkip:
			op.Operator, op.Reason = d.Operator, d.Reason
		case *events.FaultInjected:
			if d.Operator == "" && d.Reason == "" {
				op.What = "" // injected at the start: not an operator's
			}
			op.Operator, op.Reason = d.Operator, d.Fault.String()
			if d.Reason != "" {
				op.Reason += ": " + d.Reason
			}
		case *events.SignalReceived:
			op.Operator, op.Reason = d.Sender, "signal "+d.ID
			if d.Reject != "" {
				op.Reason += " rejects: " + d.Reject
			}
		case *events.DeadlinePassed:
			op.Reason = "then " + string(d.Then)
		default:
			op.What = ""
		}
		if op.What != "" {
			v.Operations = append(v.Operations, op)
		}
		v.Timeline = append(v.Timeline, Entry{Seq: e.Seq, Message: e.Message, Time: e.Time, Type: ShortType(e.Type()), Node: events.NodeOf(e.Event)})
	}
	return v
}

// ShortType is an event type without its prefix and version.
func ShortType(t events.Type) string {
	s := strings.TrimPrefix(string(t), "io.jetsaga.")
	if i := strings.LastIndex(s, ".v"); i > 0 {
		if _, err := strconv.Atoi(s[i+2:]); err == nil {
			s = s[:i]
		}
	}
	return s
}

// Summary is a saga as listed.
type Summary = index.Summary

// InFlight lists the sagas that have not finished (from the saga index).
func (c *Client) InFlight(ctx context.Context) ([]Summary, error) {
	return c.ix.All(ctx, func(Summary) bool { return true })
}

// StoredDefinition is a version of a saga definition, as stored once
// for every saga started from it.
type StoredDefinition struct {
	// Ref is its content-addressed reference (sagas' summaries name it).
	Ref        string
	Definition *saga.Definition
	// Stored is when the first saga of this version was started.
	Stored time.Time
}

// Definitions lists the stored definitions (every version of every saga
// definition started), oldest first.
func (c *Client) Definitions(ctx context.Context) ([]StoredDefinition, error) {
	list, err := c.defs.List(ctx)
	out := make([]StoredDefinition, len(list))
	for i, d := range list {
		out[i] = StoredDefinition{Ref: d.Ref, Definition: d.Definition, Stored: d.Created}
	}
	return out, err
}

// Filter selects sagas to list; zero fields select everything.
type Filter struct {
	Status string
	Name   string
	// Since and Until bound the time the saga was created.
	Since, Until time.Time
	// Limit keeps the newest Limit sagas; 0 keeps all.
	Limit int
	// Key, Meta and Definition keep the sagas started with this
	// idempotency key, with every key=value of Meta in their metadata, and
	// from this definition version (its reference).
	Key        string
	Meta       map[string]string
	Definition string
	// Paused keeps the unfinished sagas that are paused (whatever their
	// status: running, waiting or unwinding).
	Paused bool
}

// Match reports whether a summary passes the filter.
func (f Filter) Match(s Summary) bool {
	if (f.Status != "" && s.Status != f.Status) || (f.Name != "" && s.Name != f.Name) ||
		(!f.Since.IsZero() && s.Created.Before(f.Since)) || (!f.Until.IsZero() && !s.Created.Before(f.Until)) ||
		(f.Key != "" && s.IdempotencyKey != f.Key) || (f.Definition != "" && s.Definition != f.Definition) ||
		(f.Paused && (!s.Paused || machine.Status(s.Status).Finished())) {
		return false
	}
	for k, v := range f.Meta {
		if got, ok := s.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// List lists sagas, newest first: those in flight from the saga index,
// finished ones from the archive (reading the summaries of every saga
// archived since f.Since: give Since to bound the work on a long history).
func (c *Client) List(ctx context.Context, f Filter) ([]Summary, error) {
	keep := f.Match
	running, err := c.ix.All(ctx, keep)
	if err != nil {
		return nil, err
	}
	var out []Summary
	top := newest{n: f.Limit}
	for _, s := range running {
		top.add(s.Created)
	}
	// A saga is its id and creation time: an id reused after its dedupe
	// window names another saga.
	key := func(s Summary) string { return s.ID + "@" + s.Created.UTC().Format(time.RFC3339Nano) }
	finished := map[string]bool{}
	take := func(b []byte) {
		var s Summary
		if json.Unmarshal(b, &s) == nil && !finished[key(s)] {
			finished[key(s)] = true // a saga archived twice is listed once
			if keep(s) {
				out = append(out, s)
				top.add(s.Created)
			}
		}
	}
	switch {
	case f.Status != "" && !machine.Status(f.Status).Finished(), f.Paused:
		// Only sagas in flight: the archive has none.
	case f.Since.IsZero() && f.Limit > 0:
		// The newest few: read the archive backwards, and stop once what
		// is left was archived before the Limit-th newest saga found so
		// far was created (a saga is archived after it is created; a
		// margin for the server's and coordinators' clocks).
		err = c.log.ArchivedNewestFirst(ctx, func(b []byte, archived time.Time) bool {
			if top.full() && archived.Before(top.last().Add(-clockMargin)) {
				return false
			}
			take(b)
			return true
		})
	default:
		err = c.log.ArchivedSummaries(ctx, f.Since, func(b []byte) bool { take(b); return true })
	}
	if err != nil {
		return nil, err
	}
	for _, s := range running {
		if !finished[key(s)] { // archived, its marker not yet cleared
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Summary) int { return b.Created.Compare(a.Created) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// clockMargin is how far the server's clock (archive times) and the
// coordinators' (creation times) may disagree.
const clockMargin = time.Minute

// newest keeps the n newest times seen (all of them for n 0), newest
// first.
type newest struct {
	n     int
	times []time.Time
}

func (t *newest) add(at time.Time) {
	i, _ := slices.BinarySearchFunc(t.times, at, func(a, b time.Time) int { return b.Compare(a) })
	if t.n > 0 && i >= t.n {
		return
	}
	t.times = slices.Insert(t.times, i, at)
	if t.n > 0 && len(t.times) > t.n {
		t.times = t.times[:t.n]
	}
}

func (t *newest) full() bool      { return t.n > 0 && len(t.times) >= t.n }
func (t *newest) last() time.Time { return t.times[len(t.times)-1] }
