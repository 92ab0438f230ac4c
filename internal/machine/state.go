package machine

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

// Status is a saga's state.
type Status string

const (
	// StatusNew is the state of a saga with no events yet.
	StatusNew       Status = "new"
	StatusRunning   Status = "running"
	StatusUnwinding Status = "unwinding"
	// StatusStuck: an undo failed for good; the saga waits for an operator.
	StatusStuck Status = "stuck"
	// StatusWaiting: a node failed for good and its failure policy (or a
	// pivot before it) holds the saga for an operator: retry the node, skip
	// it, or abort. Nodes in flight finish; no new node starts.
	StatusWaiting   Status = "waiting"
	StatusSucceeded Status = "succeeded"
	StatusUnwound   Status = "unwound"
	StatusAbandoned Status = "abandoned"
)

// Forward reports whether the saga moves forward (no unwinding): running,
// or waiting for an operator after a failure.
func (s Status) Forward() bool { return s == StatusRunning || s == StatusWaiting }

// Finished reports whether the saga has ended.
func (s Status) Finished() bool {
	return s == StatusSucceeded || s == StatusUnwound || s == StatusAbandoned
}

// NodeState is a node's state (DESIGN.md §2.1).
type NodeState string

const (
	NodePending      NodeState = "pending"
	NodeStarted      NodeState = "started"
	NodeSucceeded    NodeState = "succeeded"
	NodeFailed       NodeState = "failed"
	NodeUndoStarted  NodeState = "undo_started"
	NodeUndoFinished NodeState = "undo_finished"
	NodeUndoFailed   NodeState = "undo_failed"
	// NodeSkipped: the node's condition was false (or its subsaga was
	// skipped); it never runs and is never undone.
	NodeSkipped NodeState = "skipped"
)

// Node is the state of one node of a saga.
type Node struct {
	State NodeState `json:"state"`
	// Attempt is the latest attempt of the action (0 before the first).
	Attempt int `json:"attempt,omitempty"`
	// Waiting is true while a request for Attempt awaits its reply (until
	// Deadline); false while the node waits to retry (until RetryAt).
	Waiting  bool      `json:"waiting,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
	// TimedOut: some attempt ended with no reply, so the action may have
	// happened even if the node fails.
	TimedOut bool `json:"timed_out,omitempty"`
	// OutcomeUnknown: the node failed with an unknown outcome; it is undone
	// like a succeeded node.
	OutcomeUnknown bool            `json:"outcome_unknown,omitempty"`
	Output         json.RawMessage `json:"output,omitempty"`
	// Error is the latest error of the action or undo.
	Error *events.Error `json:"error,omitempty"`

	// UndoAttempt is the latest attempt of the undo. Numbers keep growing
	// across an operator's retry, so every request has its own id;
	// UndoBase is the last attempt before the current round.
	UndoAttempt  int       `json:"undo_attempt,omitempty"`
	UndoBase     int       `json:"undo_base,omitempty"`
	UndoWaiting  bool      `json:"undo_waiting,omitempty"`
	UndoDeadline time.Time `json:"undo_deadline,omitzero"`
	UndoRetryAt  time.Time `json:"undo_retry_at,omitzero"`
	// RetryAuthorized: an operator asked for a failed undo to run again.
	RetryAuthorized bool `json:"retry_authorized,omitempty"`
	// Resolved is the operator's reason when a failed undo was resolved.
	Resolved string `json:"resolved,omitempty"`

	// ActionBase is the last attempt of the action before an operator's
	// retry started the current round (cf. UndoBase).
	ActionBase int `json:"action_base,omitempty"`
	// Held: the node failed for good and holds the saga for an operator
	// (StatusWaiting) until it is retried or skipped.
	Held bool `json:"held,omitempty"`
	// ActionRetryAuthorized: an operator asked for the failed action to
	// run again.
	ActionRetryAuthorized bool `json:"action_retry_authorized,omitempty"`
	// Params, when an operator's retry replaced them, are the params of
	// the node's requests.
	Params json.RawMessage `json:"params,omitempty"`
	// SkippedBy is the operator's reason when a failed node was skipped
	// (it then counts as succeeded with the operator's output).
	SkippedBy string `json:"skipped_by,omitempty"`
	// When is the condition that skipped the node.
	When string `json:"when,omitempty"`
	// Signal is the signal an await node took (early: before it started).
	Signal *events.SignalReceived `json:"signal,omitempty"`

	// Fault is the fault injected into the node, if any.
	Fault *events.Fault `json:"fault,omitempty"`
	// NotBefore is when the request of Attempt is sent (an injected delay).
	NotBefore time.Time `json:"not_before,omitzero"`
	// Repeats counts the runs of the action repeated by Fault.Repeat, and
	// UndoRepeats those of the undo in the current round; neither counts
	// against the retry policy.
	Repeats     int `json:"repeats,omitempty"`
	UndoRepeats int `json:"undo_repeats,omitempty"`
}

// repeatAction reports whether an injected fault asks for the action to
// run again after its current run.
func (n *Node) repeatAction() bool { return n.Fault != nil && n.Repeats+1 < n.Fault.Repeat }

// repeatUndo reports whether an injected fault asks for the undo to run
// again after its current run.
func (n *Node) repeatUndo() bool { return n.Fault != nil && n.UndoRepeats+1 < n.Fault.UndoRepeat }

// mayHaveRun reports whether the action may have taken effect although the
// node has not succeeded: an attempt timed out with no reply, or a run
// succeeded and an injected fault asked for another. Such a node's failure,
// whatever ends it, has kind outcome_unknown, and it is undone (rule 5).
func (n *Node) mayHaveRun() bool { return n.TimedOut || n.Repeats > 0 }

// failAction and failUndo report injected failures.
func (n *Node) failAction() bool { return n.Fault != nil && n.Fault.FailAction }
func (n *Node) failUndo() bool   { return n.Fault != nil && n.Fault.FailUndo }

// actionTries is the number of attempts of the action that count against
// its retry policy; undoTries, of the undo in the current round.
func (n *Node) actionTries(attempt int) int { return attempt - n.ActionBase - n.Repeats }
func (n *Node) undoTries(attempt int) int   { return attempt - n.UndoBase - n.UndoRepeats }

// State is a saga's state: what folding its log gives.
type State struct {
	SagaID string
	Graph  *saga.Graph
	// Created is the saga's first event, CreatedAt its time.
	Created   *events.SagaCreated
	CreatedAt time.Time
	Status    Status
	// Nodes are indexed like Graph.Nodes.
	Nodes []Node
	// Events counts the events applied; the next event's id is
	// events.LogEventID(SagaID, Events).
	Events int
	// Unwinding says why the saga unwinds, once it does.
	Unwinding *events.SagaUnwinding
	// Abandoning is set by an operator's abandon, just before the end.
	Abandoning bool
	// Paused: an operator (or a passed deadline) paused the saga; no node
	// starts until resumed.
	Paused bool
	// Deadline is when the saga's deadline passes (zero: none);
	// DeadlinePassed once it has.
	Deadline       time.Time
	DeadlinePassed bool
	// legacyStuck: the saga was made stuck by a saga.stuck.v1 event of a
	// release before stuck meant "at rest" (events.SagaStuckV1); the rules
	// of that release apply until an operator unsticks it.
	legacyStuck bool
	// TraceParent is the W3C trace context the saga started with (the
	// traceparent of its first event), carried by all its events and
	// requests.
	TraceParent string
	// Output is the saga's output once it has succeeded.
	Output json.RawMessage
	// Finished is when the saga ended (the time of its last event).
	Finished time.Time
	// Updated is the time of the latest event.
	Updated time.Time
	// graphs compiles the saga's definition (Graphs.New); nil: anew.
	graphs *Graphs
}

// New returns the state of a saga with an empty log.
func New(sagaID string) *State { return &State{SagaID: sagaID, Status: StatusNew} }

// Clone returns a copy that can be changed without changing s. Outputs and
// errors are shared: they are never modified in place.
func (s *State) Clone() *State {
	c := *s
	c.Nodes = slices.Clone(s.Nodes)
	return &c
}

// Node returns the state of the node with the given path.
func (s *State) Node(path string) (*saga.GraphNode, *Node, bool) {
	if s.Graph == nil {
		return nil, nil, false
	}
	g, ok := s.Graph.Node(path)
	if !ok {
		return nil, nil, false
	}
	return g, &s.Nodes[g.Index], true
}

// InFlight counts the nodes with an action or undo request awaiting a
// reply or a retry (an await waiting for its signal is not one).
func (s *State) InFlight() int {
	k := 0
	for i := range s.Nodes {
		switch s.Nodes[i].State {
		case NodeStarted:
			if hasParticipant(s.Graph.Nodes[i]) {
				k++
			}
		case NodeUndoStarted:
			k++
		}
	}
	return k
}

// PastPivot returns the path of a pivot node that has succeeded, or "":
// past it, the saga no longer unwinds.
func (s *State) PastPivot() string {
	for i, g := range s.Graph.Nodes {
		if g.Spec.Pivot && g.Kind != saga.KindSubsagaStart && s.Nodes[i].State == NodeSucceeded {
			return g.Path
		}
	}
	return ""
}

// Held lists the failed nodes that hold the saga for an operator, in graph
// order.
func (s *State) Held() []string {
	var out []string
	for i := range s.Nodes {
		if s.Nodes[i].Held {
			out = append(out, s.Graph.Nodes[i].Path)
		}
	}
	return out
}

// pauses reports whether a failure for good of node g holds the saga for
// an operator instead of unwinding it.
func (s *State) pauses(g *saga.GraphNode) bool {
	return g.OnFailure == saga.Pause || s.PastPivot() != ""
}

// atRest reports whether nothing more can happen in an unwinding saga
// without an operator: no action or undo is outstanding or waiting to
// retry, no operator's retry is pending, and no undo can start (an undo
// held back only by a pause or by admission can).
func (s *State) atRest() bool {
	for i := range s.Nodes {
		n := &s.Nodes[i]
		switch {
		case n.State == NodeStarted, n.State == NodeUndoStarted:
			return false
		case n.State == NodeUndoFailed && n.RetryAuthorized:
			return false
		case n.needsUndo() && s.childrenSettled(i):
			return false
		}
	}
	return true
}

// FailedUndos lists the nodes whose undo failed for good, in graph order.
func (s *State) FailedUndos() []events.FailedUndo { return s.failedUndos() }

// failedUndos lists the nodes whose undo failed for good, in graph order.
func (s *State) failedUndos() []events.FailedUndo {
	var out []events.FailedUndo
	for i := range s.Nodes {
		if n := &s.Nodes[i]; n.State == NodeUndoFailed {
			u := events.FailedUndo{Node: s.Graph.Nodes[i].Path}
			if n.Error != nil {
				u.Error = *n.Error
			}
			out = append(out, u)
		}
	}
	return out
}

// needsUndo reports whether the node did (or may have done) something that
// unwinding must undo, and has not been undone yet.
func (n *Node) needsUndo() bool {
	return n.State == NodeSucceeded || (n.State == NodeFailed && n.OutcomeUnknown)
}

// settled reports whether, for unwinding, the node is done: it never ran,
// was skipped, failed without effect, or was undone. A parent's undo waits
// for all its children to be settled.
func (n *Node) settled() bool {
	switch n.State {
	case NodePending, NodeUndoFinished, NodeSkipped:
		return true
	case NodeFailed:
		return !n.OutcomeUnknown
	}
	return false
}

// childrenSettled reports whether every child of node i is settled.
func (s *State) childrenSettled(i int) bool {
	for _, c := range s.Graph.Nodes[i].Children {
		if !s.Nodes[c].settled() {
			return false
		}
	}
	return true
}

// parentsSucceeded reports whether every parent of node i has succeeded
// or was skipped (a skipped node satisfies its dependents).
func (s *State) parentsSucceeded(i int) bool {
	for _, p := range s.Graph.Nodes[i].Parents {
		if !s.Nodes[p].done() {
			return false
		}
	}
	return true
}

// done reports whether a node is done going forward: succeeded or skipped.
func (n *Node) done() bool { return n.State == NodeSucceeded || n.State == NodeSkipped }

// output is the node's output as its dependents see it: null when it was
// skipped.
func (n *Node) output() json.RawMessage {
	if n.Output == nil {
		return json.RawMessage("null")
	}
	return n.Output
}

// scopeSkipped reports whether node i is in (or ends) a subsaga that was
// skipped.
func (s *State) scopeSkipped(i int) bool {
	g := s.Graph.Nodes[i]
	if g.ScopeStart >= 0 && s.Nodes[g.ScopeStart].State == NodeSkipped {
		return true
	}
	return g.OwnStart >= 0 && s.Nodes[g.OwnStart].State == NodeSkipped
}

// params returns the params of node i's scope (or those an operator's
// retry gave the node).
func (s *State) params(i int) json.RawMessage {
	if p := s.Nodes[i].Params; p != nil {
		return p
	}
	if st := s.Graph.Nodes[i].ScopeStart; st >= 0 {
		return s.Nodes[st].output()
	}
	return s.Created.Params
}

// legacyDefaults are the defaults of logs written before saga.created
// recorded them (events.SagaCreated.Defaults): the values every release
// used until then. They must never change, or those logs fold differently.
var legacyDefaults = saga.Defaults{
	Retry:     saga.RetryPolicy{MaxAttempts: 3, InitialDelay: saga.Duration(time.Second), MaxDelay: saga.Duration(30 * time.Second), Multiplier: 2, Jitter: 0.2},
	UndoRetry: saga.RetryPolicy{MaxAttempts: 10, InitialDelay: saga.Duration(time.Second), MaxDelay: saga.Duration(time.Minute), Multiplier: 2, Jitter: 0.2},
	Timeout:   saga.Duration(30 * time.Second),
}

// defaults are the policies of the saga's nodes that set none: those its
// log records.
func (s *State) defaults() *saga.Defaults {
	if s.Created.Defaults != nil {
		return s.Created.Defaults
	}
	return &legacyDefaults
}

func (s *State) actionPolicy(n *saga.Node) saga.RetryPolicy {
	if n.Retry != nil {
		return *n.Retry
	}
	return s.defaults().Retry
}

func (s *State) undoPolicy(n *saga.Node) saga.RetryPolicy {
	if n.UndoRetry != nil {
		return *n.UndoRetry
	}
	return s.defaults().UndoRetry
}

func (s *State) timeout(n *saga.Node) time.Duration {
	if n.Timeout > 0 {
		return n.Timeout.Std()
	}
	return s.defaults().Timeout.Std()
}

// hasParticipant reports whether the node's action runs on a participant
// (and undo, when it has one); other nodes are carried out by the machine.
func hasParticipant(g *saga.GraphNode) bool { return g.Kind == saga.KindAction }

func hasUndoRequest(g *saga.GraphNode) bool {
	return (g.Kind == saga.KindAction || g.Kind == saga.KindAwait) && g.Spec.Undo != ""
}

// requestSubject is the action whose subject a node's requests go to: its
// action's, or for an await node (which has none) its undo's.
func requestSubject(g *saga.GraphNode) string {
	if g.Kind == saga.KindAwait {
		return g.Spec.Undo
	}
	return g.Spec.Action
}
