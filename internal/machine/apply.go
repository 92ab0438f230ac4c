package machine

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

// Fold replays a saga's log from its first event. It stops at the first
// illegal event with an *IllegalEventError.
func Fold(sagaID string, evs []events.Event) (*State, error) {
	s := New(sagaID)
	if err := s.ApplyAll(evs); err != nil {
		return nil, err
	}
	return s, nil
}

// ApplyAll applies the events of one log message (one decision) in order:
// all of them or, on error, none.
func (s *State) ApplyAll(evs []events.Event) error {
	c := s.Clone()
	for _, e := range evs {
		if err := c.Apply(e); err != nil {
			return err
		}
	}
	*s = *c
	return nil
}

// Apply applies one event. An event that is not a legal transition from the
// current state is rejected with an *IllegalEventError and s is unchanged.
func (s *State) Apply(e events.Event) error {
	if err := s.apply(e); err != nil {
		return err
	}
	s.Events++
	s.Updated = e.Time
	return nil
}

func (s *State) apply(e events.Event) error {
	illegal := func(node string, format string, args ...any) error {
		err := &IllegalEventError{SagaID: s.SagaID, EventID: e.ID, Event: e.Type(), Node: node, SagaState: s.Status, Reason: fmt.Sprintf(format, args...)}
		if _, n, ok := s.Node(node); ok {
			err.NodeState = n.State
		}
		return err
	}
	if e.Data == nil {
		return illegal("", "event has no data")
	}
	if e.SagaID != s.SagaID {
		return illegal("", "event is for saga %s", e.SagaID)
	}
	if want := events.LogEventID(s.SagaID, s.Events); e.ID != want {
		return illegal("", "event id must be %s: the log has %d events before it (duplicate, missing or reordered event)", want, s.Events)
	}
	if s.Status == StatusNew {
		created, ok := e.Data.(*events.SagaCreated)
		if !ok {
			return illegal("", "the first event of a saga must be %s", events.TypeSagaCreated)
		}
		if created.Unresolved() {
			return illegal("", "saga.created refers to definition %s and defaults %s, which were not read from the definitions bucket",
				created.DefinitionRef, created.DefaultsRef)
		}
		g, ref, err := s.graphs.compile(created.Definition, created.DefinitionRef)
		if err != nil {
			return illegal("", "definition: %v", err)
		}
		if created.Defaults != nil {
			if probs := created.Defaults.Problems(); len(probs) > 0 {
				return illegal("", "defaults: %s", strings.Join(probs, "; "))
			}
		}
		// Keep the shared definition, defaults and references, not this
		// event's copies of them.
		c := *created
		c.Definition, c.DefinitionRef = g.Def, ref
		if created.DefinitionRef == "" {
			c.DefinitionRef = "" // a log of an earlier release names none
		}
		c.Defaults, c.DefaultsRef = s.graphs.shareDefaults(created.Defaults, created.DefaultsRef)
		created = &c
		s.Created, s.CreatedAt, s.Graph, s.Status, s.TraceParent = created, e.Time, g, StatusRunning, e.TraceParent
		if d := g.Def.Deadline; d > 0 {
			s.Deadline = e.Time.Add(d.Std())
		}
		s.Nodes = make([]Node, len(g.Nodes))
		for i := range s.Nodes {
			s.Nodes[i].State = NodePending
		}
		return nil
	}
	if s.Status.Finished() {
		return illegal("", "the saga has finished")
	}

	if s.Status == StatusStuck && !s.legacyStuck {
		// A stuck saga is at rest: only an operator changes it.
		switch e.Data.(type) {
		case *events.OperatorRetry, *events.OperatorResolve, *events.OperatorAbandon, *events.SagaFinished,
			*events.OperatorPause, *events.OperatorResume, *events.FaultInjected:
		default:
			return illegal(events.NodeOf(e), "the saga is stuck: nothing happens until an operator retries or resolves a failed undo, or abandons the saga")
		}
	}

	// node resolves the event's node, or says it is unknown.
	node := func(path string) (*saga.GraphNode, *Node, error) {
		g, n, ok := s.Node(path)
		if !ok {
			return nil, nil, illegal(path, "the saga has no node %q", path)
		}
		return g, n, nil
	}

	switch d := e.Data.(type) {
	case *events.SagaCreated:
		return illegal("", "the saga already exists")

	case *events.NodeStarted:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if !s.Status.Forward() {
			return illegal(d.Node, "no node starts while the saga is %s", s.Status)
		}
		switch {
		case n.State == NodePending && d.Attempt == 1:
			if s.Status != StatusRunning {
				return illegal(d.Node, "no new node starts while the saga is %s", s.Status)
			}
			if !s.parentsSucceeded(g.Index) {
				return illegal(d.Node, "a node starts only after all its parents succeeded or were skipped")
			}
			n.Repeats = 0
		case n.State == NodeStarted && !n.Waiting && d.Attempt == n.Attempt+1:
			if tries, most := n.actionTries(d.Attempt), s.actionPolicy(g.Spec).MaxAttempts; tries > most {
				return illegal(d.Node, "attempt %d (try %d) exceeds the retry policy's %d", d.Attempt, tries, most)
			}
		case n.State == NodeFailed && n.ActionRetryAuthorized && d.Attempt == n.Attempt+1:
			// An operator's retry starts a new round of attempts.
			n.ActionBase, n.Repeats, n.ActionRetryAuthorized, n.OutcomeUnknown, n.Signal = n.Attempt, 0, false, false, nil
		default:
			return illegal(d.Node, "attempt %d cannot start after attempt %d (waiting for a reply: %v)", d.Attempt, n.Attempt, n.Waiting)
		}
		n.State, n.Attempt, n.Waiting, n.Deadline, n.RetryAt, n.NotBefore = NodeStarted, d.Attempt, true, d.Deadline, zeroTime, d.NotBefore

	case *events.NodeSucceeded:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeStarted || d.Attempt > n.Attempt {
			return illegal(d.Node, "only a started node's attempt (≤ %d) can succeed, not attempt %d", n.Attempt, d.Attempt)
		}
		out := d.Output
		if len(out) == 0 {
			out = json.RawMessage("null")
		}
		n.State, n.Waiting, n.Output, n.Error = NodeSucceeded, false, out, nil

	case *events.NodeAttemptFailed:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if !s.Status.Forward() {
			return illegal(d.Node, "no retry is scheduled while the saga is %s", s.Status)
		}
		if n.State != NodeStarted || !n.Waiting || d.Attempt != n.Attempt {
			return illegal(d.Node, "only the outstanding attempt %d can fail", n.Attempt)
		}
		if n.actionTries(d.Attempt) >= s.actionPolicy(g.Spec).MaxAttempts {
			return illegal(d.Node, "attempt %d is the last the policy allows: the node must fail", d.Attempt)
		}
		n.Waiting, n.RetryAt, n.Error = false, d.RetryAt, &d.Error
		n.TimedOut = n.TimedOut || d.Error.Kind == events.ErrorTimeout

	case *events.NodeFailed:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeStarted || d.Attempt != n.Attempt {
			return illegal(d.Node, "only a started node's latest attempt (%d) can fail", n.Attempt)
		}
		if d.Error.Kind == events.ErrorCanceled && s.Status.Forward() {
			return illegal(d.Node, "a node is canceled only when the saga unwinds")
		}
		if d.Error.Kind == events.ErrorCondition && g.When == nil {
			return illegal(d.Node, "a node without a condition cannot fail on one")
		}
		if (d.Error.Kind == events.ErrorRejected || d.Error.Kind == events.ErrorTimeout) && g.Kind != saga.KindAwait {
			return illegal(d.Node, "only an await node fails with %s", d.Error.Kind)
		}
		if d.Error.Kind == events.ErrorInjected && !n.failAction() {
			return illegal(d.Node, "an injected failure needs a fault that fails the action")
		}
		if n.mayHaveRun() && d.Error.Kind != events.ErrorOutcomeUnknown {
			return illegal(d.Node, "an earlier attempt timed out or ran, so the node's failure must be %s, not %s", events.ErrorOutcomeUnknown, d.Error.Kind)
		}
		n.State, n.Waiting, n.Error = NodeFailed, false, &d.Error
		n.OutcomeUnknown = d.Error.Kind == events.ErrorOutcomeUnknown

	case *events.SagaUnwinding:
		if !s.Status.Forward() {
			return illegal("", "only a running (or waiting) saga starts unwinding")
		}
		if p := s.PastPivot(); p != "" {
			return illegal("", "the saga is past pivot %q: it cannot unwind", p)
		}
		switch d.Reason {
		case events.UnwindNodeFailed:
			if _, n, err := node(d.Node); err != nil {
				return err
			} else if n.State != NodeFailed {
				return illegal(d.Node, "unwinding because of node %q, which has not failed", d.Node)
			}
		case events.UnwindDeadline:
			if !s.DeadlinePassed {
				return illegal("", "unwinding for a deadline that has not passed")
			}
		}
		for i := range s.Nodes {
			s.Nodes[i].Held = false
		}
		s.Status, s.Unwinding = StatusUnwinding, d

	case *events.SagaWaiting:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if !s.Status.Forward() || n.State != NodeFailed || n.Held {
			return illegal(d.Node, "a saga waits for an operator only on a node that has just failed, while it runs")
		}
		if !s.pauses(g) {
			return illegal(d.Node, "the node's failure policy is unwind and no pivot has succeeded: the saga must unwind")
		}
		n.Held, s.Status = true, StatusWaiting

	case *events.NodeSkipped:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if s.Status != StatusRunning || n.State != NodePending || !s.parentsSucceeded(g.Index) {
			return illegal(d.Node, "only a node ready to start in a running saga can be skipped")
		}
		if d.When == "" && !s.scopeSkipped(g.Index) {
			return illegal(d.Node, "a node is skipped by its condition, or with its subsaga")
		}
		n.State, n.When = NodeSkipped, d.When

	case *events.SignalReceived:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if g.Kind != saga.KindAwait {
			return illegal(d.Node, "signals are for await nodes; this is a %s node", g.Kind)
		}
		if !s.Status.Forward() || n.Signal != nil || !(n.State == NodePending || n.State == NodeStarted && n.Waiting) {
			return illegal(d.Node, "the node takes no signal now")
		}
		n.Signal = d

	case *events.OperatorSkip:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if !n.Held {
			return illegal(d.Node, "only a failed node holding a waiting saga can be skipped")
		}
		n.State, n.Output, n.SkippedBy, n.Held = NodeSucceeded, d.Output, d.Reason, false
		s.rewait()

	case *events.DeadlinePassed:
		if s.Deadline.IsZero() || s.DeadlinePassed || !s.Status.Forward() {
			return illegal("", "the saga has no deadline to pass now")
		}
		if p := s.PastPivot(); p != "" && d.Then != saga.Pause {
			return illegal("", "the saga is past pivot %q: a deadline pauses it", p)
		}
		s.DeadlinePassed = true
		if d.Then == saga.Pause {
			s.Paused = true
		}

	case *events.UndoStarted:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if s.Status != StatusUnwinding && !s.legacyStuck {
			return illegal(d.Node, "undos run only while the saga unwinds")
		}
		switch {
		case n.needsUndo() && d.Attempt == 1:
			if !s.childrenSettled(g.Index) {
				return illegal(d.Node, "a node is undone only after all its descendants are undone or never ran")
			}
			n.UndoRepeats = 0
		case n.State == NodeUndoStarted && !n.UndoWaiting && d.Attempt == n.UndoAttempt+1:
			if tries, most := n.undoTries(d.Attempt), s.undoPolicy(g.Spec).MaxAttempts; tries > most {
				return illegal(d.Node, "undo attempt %d (try %d of this round) exceeds the retry policy's %d", d.Attempt, tries, most)
			}
		case n.State == NodeUndoFailed && n.RetryAuthorized && d.Attempt == n.UndoAttempt+1:
			// An operator's retry starts a new round of attempts.
			n.UndoBase, n.UndoRepeats = n.UndoAttempt, 0
		default:
			return illegal(d.Node, "undo attempt %d cannot start (undo attempt so far %d)", d.Attempt, n.UndoAttempt)
		}
		n.State, n.UndoAttempt, n.UndoWaiting, n.UndoDeadline, n.UndoRetryAt, n.RetryAuthorized = NodeUndoStarted, d.Attempt, true, d.Deadline, zeroTime, false

	case *events.UndoAttemptFailed:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeUndoStarted || !n.UndoWaiting || d.Attempt != n.UndoAttempt {
			return illegal(d.Node, "only the outstanding undo attempt %d can fail", n.UndoAttempt)
		}
		if n.undoTries(d.Attempt) >= s.undoPolicy(g.Spec).MaxAttempts {
			return illegal(d.Node, "undo attempt %d is the last the policy allows: the undo must fail", d.Attempt)
		}
		n.UndoWaiting, n.UndoRetryAt, n.Error = false, d.RetryAt, &d.Error

	case *events.UndoFinished:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeUndoStarted || d.Attempt > n.UndoAttempt {
			return illegal(d.Node, "only a started undo's attempt (≤ %d) can finish, not attempt %d", n.UndoAttempt, d.Attempt)
		}
		n.State, n.UndoWaiting = NodeUndoFinished, false

	case *events.UndoFailed:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeUndoStarted || d.Attempt != n.UndoAttempt {
			return illegal(d.Node, "only a started undo's latest attempt (%d) can fail", n.UndoAttempt)
		}
		if d.Error.Kind == events.ErrorInjected && !n.failUndo() {
			return illegal(d.Node, "an injected failure needs a fault that fails the undo")
		}
		n.State, n.UndoWaiting, n.Error = NodeUndoFailed, false, &d.Error

	case *events.SagaStuckV1:
		// Written by a release before stuck meant "at rest".
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeUndoFailed || (s.Status != StatusUnwinding && s.Status != StatusStuck) {
			return illegal(d.Node, "a saga is stuck only on a failed undo, while it unwinds")
		}
		s.Status, s.legacyStuck = StatusStuck, true

	case *events.SagaStuck:
		if s.Status != StatusUnwinding {
			return illegal("", "only an unwinding saga becomes stuck")
		}
		if !s.atRest() {
			return illegal("", "a saga is stuck only at rest: an action or undo is still outstanding, waiting to retry or ready to start")
		}
		failed := s.failedUndos()
		if len(failed) != len(d.Undos) {
			return illegal("", "saga.stuck must list every failed undo (%d), not %d", len(failed), len(d.Undos))
		}
		for i, u := range d.Undos {
			if u.Node != failed[i].Node {
				return illegal(u.Node, "saga.stuck must list the failed undos in graph order: undos[%d] is %q, want %q", i, u.Node, failed[i].Node)
			}
		}
		s.Status = StatusStuck

	case *events.OperatorAbort:
		if !s.Status.Forward() {
			return illegal("", "only a running (or waiting) saga can be aborted")
		}
		if p := s.PastPivot(); p != "" {
			return illegal("", "the saga is past pivot %q: it cannot be aborted", p)
		}

	case *events.OperatorRetry:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		switch {
		case n.State == NodeUndoFailed:
			n.RetryAuthorized = true
			s.unstick()
		case n.Held:
			n.Held, n.ActionRetryAuthorized = false, true
			if d.Params != nil {
				n.Params = d.Params
			}
			s.rewait()
		default:
			return illegal(d.Node, "only a failed undo, or a failed node holding a waiting saga, can be retried")
		}

	case *events.OperatorResolve:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeUndoFailed {
			return illegal(d.Node, "only a failed undo can be resolved")
		}
		n.State, n.Resolved, n.RetryAuthorized = NodeUndoFinished, d.Reason, false
		s.unstick()

	case *events.OperatorAbandon:
		s.Abandoning = true

	case *events.OperatorPause:
		if s.Paused {
			return illegal("", "the saga is paused already")
		}
		s.Paused = true

	case *events.OperatorResume:
		if !s.Paused {
			return illegal("", "the saga is not paused")
		}
		s.Paused = false

	case *events.FaultInjected:
		g, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if !hasParticipant(g) {
			return illegal(d.Node, "faults apply to action nodes; %q is a %s node", d.Node, g.Kind)
		}
		if err := checkUndoFault(g, d.Fault); err != nil {
			return illegal(d.Node, "%v", err)
		}
		if d.Fault.Clears() {
			n.Fault = nil
		} else {
			f := d.Fault
			n.Fault = &f
		}

	case *events.NodeRepeated:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if !s.Status.Forward() {
			return illegal(d.Node, "an action is repeated only while the saga runs")
		}
		if n.State != NodeStarted || !n.Waiting || d.Attempt != n.Attempt {
			return illegal(d.Node, "only the outstanding attempt %d can be repeated", n.Attempt)
		}
		if !n.repeatAction() {
			return illegal(d.Node, "no injected fault asks for the action to run again")
		}
		n.Waiting, n.Repeats = false, n.Repeats+1

	case *events.UndoRepeated:
		_, n, err := node(d.Node)
		if err != nil {
			return err
		}
		if n.State != NodeUndoStarted || !n.UndoWaiting || d.Attempt != n.UndoAttempt {
			return illegal(d.Node, "only the outstanding undo attempt %d can be repeated", n.UndoAttempt)
		}
		if !n.repeatUndo() {
			return illegal(d.Node, "no injected fault asks for the undo to run again")
		}
		n.UndoWaiting, n.UndoRepeats = false, n.UndoRepeats+1

	case *events.SagaFinished:
		switch d.Outcome {
		case events.OutcomeSucceeded:
			if s.Status != StatusRunning {
				return illegal("", "a saga that unwinds cannot succeed")
			}
			for i := range s.Nodes {
				if !s.Nodes[i].done() {
					return illegal("", "node %q has not succeeded (or been skipped)", s.Graph.Nodes[i].Path)
				}
			}
			s.Status, s.Output = StatusSucceeded, d.Output
		case events.OutcomeUnwound:
			if s.Status != StatusUnwinding {
				return illegal("", "only an unwinding saga (not stuck) ends unwound")
			}
			for i := range s.Nodes {
				if !s.Nodes[i].settled() {
					return illegal("", "node %q is %s, not undone", s.Graph.Nodes[i].Path, s.Nodes[i].State)
				}
			}
			s.Status = StatusUnwound
		case events.OutcomeAbandoned:
			if !s.Abandoning {
				return illegal("", "a saga is abandoned only by an operator")
			}
			s.Status = StatusAbandoned
		}
		s.Finished = e.Time

	default:
		return illegal("", "%s is not a saga log event", e.Type())
	}
	return nil
}

// rewait returns a waiting saga to running once no failed node holds it.
func (s *State) rewait() {
	if s.Status == StatusWaiting && len(s.Held()) == 0 {
		s.Status = StatusRunning
	}
}

// unstick returns a stuck saga to unwinding: an operator retried or
// resolved a failed undo. If the saga comes to rest again with failed
// undos, it is stuck again (a new saga.stuck listing them all).
func (s *State) unstick() {
	if s.Status == StatusStuck {
		s.Status, s.legacyStuck = StatusUnwinding, false
	}
}

var zeroTime time.Time
