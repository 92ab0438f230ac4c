package machine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

// Input is what Decide reacts to. Every input carries the coordinator's clock
// reading, so the machine never reads a clock.
type Input interface{ now() time.Time }

// Start creates a saga.
type Start struct {
	Now     time.Time
	Created events.SagaCreated
	// TraceParent is the W3C trace context of the start; every event of
	// the saga carries it.
	TraceParent string
	// Faults are injected as the saga is created.
	Faults []events.Fault
}

// Reply is a participant's reply, already decoded.
type Reply struct {
	Now time.Time
	// Reply names the request it answers (RequestID, checked against the
	// node, op and attempt); that the reply event's id answers that
	// request is the caller's to check (events.ReplyID).
	Reply events.ActionReply
}

// TimerFired is a timer armed by an ArmTimer command coming due.
type TimerFired struct {
	Now   time.Time
	Timer Timer
}

// Abort asks a running saga to unwind.
type Abort struct {
	Now              time.Time
	Operator, Reason string
}

// RetryUndo asks for a failed undo to run again, or, in a saga waiting
// for an operator, a failed node's action (with Params, if set, replacing
// its params).
type RetryUndo struct {
	Now                    time.Time
	Node, Operator, Reason string
	Params                 json.RawMessage
}

// Skip declares a failed node of a waiting saga succeeded with Output.
type Skip struct {
	Now                    time.Time
	Node, Operator, Reason string
	Output                 json.RawMessage
}

// Signal is a signal for an await node. ID deduplicates it.
type Signal struct {
	Now              time.Time
	Node, ID, Sender string
	Data             json.RawMessage
	// Reject, when set, fails the node with this reason.
	Reject string
}

// Resolve declares a failed undo done by other means.
type Resolve struct {
	Now                    time.Time
	Node, Operator, Reason string
}

// Abandon ends a saga as it is.
type Abandon struct {
	Now              time.Time
	Operator, Reason string
}

// Pause holds a saga's new nodes back; Resume lets them go.
type Pause struct {
	Now              time.Time
	Operator, Reason string
}

// Resume resumes a paused saga.
type Resume struct {
	Now              time.Time
	Operator, Reason string
}

// InjectFault sets or clears the fault of one action node.
type InjectFault struct {
	Now              time.Time
	Fault            events.Fault
	Operator, Reason string
}

// OperatorInput is the input an operator command asks for. An action it
// does not know is an error, never another action.
func OperatorInput(now time.Time, cmd events.OperatorCommand) (Input, error) {
	switch cmd.Action {
	case events.ActionAbort:
		return Abort{Now: now, Operator: cmd.Operator, Reason: cmd.Reason}, nil
	case events.ActionRetry:
		return RetryUndo{Now: now, Node: cmd.Node, Operator: cmd.Operator, Reason: cmd.Reason, Params: cmd.Params}, nil
	case events.ActionSkip:
		return Skip{Now: now, Node: cmd.Node, Operator: cmd.Operator, Reason: cmd.Reason, Output: cmd.Output}, nil
	case events.ActionResolve:
		return Resolve{Now: now, Node: cmd.Node, Operator: cmd.Operator, Reason: cmd.Reason}, nil
	case events.ActionAbandon:
		return Abandon{Now: now, Operator: cmd.Operator, Reason: cmd.Reason}, nil
	case events.ActionPause:
		return Pause{Now: now, Operator: cmd.Operator, Reason: cmd.Reason}, nil
	case events.ActionResume:
		return Resume{Now: now, Operator: cmd.Operator, Reason: cmd.Reason}, nil
	case events.ActionFault:
		if cmd.Fault == nil {
			return nil, errors.New("machine: a fault command without a fault")
		}
		return InjectFault{Now: now, Fault: *cmd.Fault, Operator: cmd.Operator, Reason: cmd.Reason}, nil
	}
	return nil, fmt.Errorf("machine: unknown operator action %q", cmd.Action)
}

// Recover resumes a saga loaded from its log: every outstanding request is
// sent again and every timer armed again.
type Recover struct{ Now time.Time }

// Advance starts what can start now, for a saga that was held back by
// Options.Room or Options.MaxInFlight.
type Advance struct{ Now time.Time }

func (i Start) now() time.Time       { return i.Now }
func (i Reply) now() time.Time       { return i.Now }
func (i TimerFired) now() time.Time  { return i.Now }
func (i Abort) now() time.Time       { return i.Now }
func (i RetryUndo) now() time.Time   { return i.Now }
func (i Resolve) now() time.Time     { return i.Now }
func (i Abandon) now() time.Time     { return i.Now }
func (i Recover) now() time.Time     { return i.Now }
func (i InjectFault) now() time.Time { return i.Now }
func (i Pause) now() time.Time       { return i.Now }
func (i Resume) now() time.Time      { return i.Now }
func (i Advance) now() time.Time     { return i.Now }
func (i Skip) now() time.Time        { return i.Now }
func (i Signal) now() time.Time      { return i.Now }

// TimerKind says what a timer is for.
type TimerKind string

const (
	// TimerTimeout: an attempt's deadline.
	TimerTimeout TimerKind = "timeout"
	// TimerRetry: the end of the wait before the next attempt.
	TimerRetry TimerKind = "retry"
	// TimerDeadline: the saga's deadline (no node, op or attempt).
	TimerDeadline TimerKind = "deadline"
)

// Timer identifies one timer of a saga.
type Timer struct {
	Kind    TimerKind `json:"kind"`
	Op      events.Op `json:"op"`
	Node    string    `json:"node"`
	Attempt int       `json:"attempt"`
}

// ID is the timer's deterministic id within its saga.
func (t Timer) ID() string {
	if t.Kind == TimerDeadline {
		return "saga:deadline"
	}
	return fmt.Sprintf("%s:%s:%s:%d", t.Node, t.Op, t.Kind, t.Attempt)
}

// Command is something to do once a decision's events are durable.
type Command interface{ isCommand() }

// SendRequest publishes an action or undo request to participants.
type SendRequest struct {
	// Action names the request subject (streams.RequestSubject). Do and
	// undo requests of a node both go to its action's subject, so the
	// participant that registered the action's undo with it receives them.
	Action string
	// ID is the request event's id (events.RequestID).
	ID      string
	Request events.ActionRequest
	// NotBefore, when set, is when to send the request (an injected delay).
	NotBefore time.Time
	// TraceParent is the saga's trace context.
	TraceParent string
}

// ArmTimer arms a durable timer that fires at At.
type ArmTimer struct {
	Timer Timer
	At    time.Time
}

func (SendRequest) isCommand() {}
func (ArmTimer) isCommand()    {}

// Options tune decisions without changing what is legal: a replay does not
// need them.
type Options struct {
	// MaxInFlight bounds the action and undo requests of one saga awaiting
	// replies or retries at once; 0 means no bound.
	MaxInFlight int
	// Limited: at most Room nodes may start their first action or undo
	// request in this decision; the others are held back
	// (Decision.Throttled) and Decision.Admitted says how many started. A
	// coordinator uses it to bound the requests in flight across its
	// sagas. Without Limited there is no such bound.
	Limited bool
	Room    int
	// Source is the CloudEvents source of the events emitted; default
	// events.SourceCoordinator. Coordinators put their name in it, so two
	// writers never produce identical log messages.
	Source string
	// Epoch is the writer's lease epoch, stamped on the events emitted.
	Epoch uint64
}

// Decision is what Decide returns.
type Decision struct {
	// Events to append to the log, in order, as one message.
	Events []events.Event
	// Commands to carry out once Events are durable.
	Commands []Command
	// State is the state after Events: what folding the log will give.
	State *State
	// Throttled: a node could have started but Options held it back; decide
	// Advance when there is room.
	Throttled bool
	// Admitted counts the nodes that started a first request and took a
	// place of Options.Room.
	Admitted int
}

// Decide returns the events and commands that input leads to. An input that
// does not apply (a stale or forged reply, a timer for a finished attempt,
// an operator command the saga's state does not allow) is a *RejectedError
// and changes nothing. s is not modified.
func Decide(s *State, in Input, opt Options) (Decision, error) {
	// Round(0) drops the monotonic clock reading, which a replayed time
	// would not have.
	d := &decider{s: s.Clone(), now: in.now().Round(0).UTC(), opt: opt}
	if d.opt.Source == "" {
		d.opt.Source = events.SourceCoordinator
	}
	reject := func(node, format string, args ...any) (Decision, error) {
		return Decision{}, &RejectedError{SagaID: s.SagaID, Node: node, Reason: fmt.Sprintf(format, args...)}
	}
	if _, ok := in.(Start); !ok {
		if s.Status == StatusNew {
			return reject("", "the saga does not exist")
		}
		if s.Status.Finished() {
			return reject("", "the saga has finished (%s)", s.Status)
		}
	}
	var err error
	switch in := in.(type) {
	case Start:
		if s.Status != StatusNew {
			if differs := in.Created.Differences(s.Created); len(differs) > 0 {
				return Decision{}, &RejectedError{SagaID: s.SagaID, Err: ErrIdempotencyConflict,
					Reason: fmt.Sprintf("the saga already exists, started with a different %s (idempotency key %q): the same id or key must mean the same request",
						strings.Join(differs, " and "), s.Created.IdempotencyKey)}
			}
			return reject("", "the saga already exists")
		}
		if err := saga.Validate(in.Created.Definition); err != nil {
			return Decision{}, err
		}
		c := in.Created
		if len(c.Params) == 0 {
			c.Params = json.RawMessage("null")
		}
		if c.Defaults == nil {
			// Recorded, so that this saga keeps them across releases.
			defaults := saga.CurrentDefaults()
			c.Defaults = &defaults
		}
		// Stored once each, content-addressed; the log refers to them.
		if _, c.DefinitionRef, err = events.DefinitionDoc(c.Definition); err != nil {
			return Decision{}, err
		}
		if _, c.DefaultsRef, err = events.DefaultsDoc(c.Defaults); err != nil {
			return Decision{}, err
		}
		d.s.TraceParent = in.TraceParent
		err = d.emit(&c)
		if err == nil {
			if err := CheckFaults(d.s.Graph, in.Faults); err != nil {
				return reject("", "%v", err)
			}
		}
		for _, f := range in.Faults {
			if err == nil {
				err = d.emit(&events.FaultInjected{Fault: f})
			}
		}
		if err == nil && !d.s.Deadline.IsZero() {
			d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerDeadline}, At: d.s.Deadline})
		}
	case Reply:
		if reason, node := d.reply(in.Reply); reason != "" {
			return reject(node, "%s", reason)
		}
	case TimerFired:
		if reason := d.timer(in.Timer); reason != "" {
			return reject(in.Timer.Node, "timer %s: %s", in.Timer.ID(), reason)
		}
	case Abort:
		if !s.Status.Forward() {
			return reject("", "only a running (or waiting) saga can be aborted; it is %s", s.Status)
		}
		if p := s.PastPivot(); p != "" {
			return reject("", "the saga is past pivot %q and can only go forward: retry or skip the failed node instead", p)
		}
		if s.Paused {
			// Abort wins over pause: a paused saga would hold its undos
			// back, and the abort would wait for a resume nobody meant.
			d.must(&events.OperatorResume{Operator: in.Operator, Reason: "to abort: " + in.Reason})
		}
		d.must(&events.OperatorAbort{Operator: in.Operator, Reason: in.Reason})
		d.must(&events.SagaUnwinding{Reason: events.UnwindAborted})
	case RetryUndo:
		_, n, ok := s.Node(in.Node)
		switch {
		case !ok:
			return reject(in.Node, "the saga has no node %q", in.Node)
		case n.State == NodeUndoFailed:
			if in.Params != nil {
				return reject(in.Node, "params replace an action's; an undo is retried with its own")
			}
			d.must(&events.OperatorRetry{Node: in.Node, Operator: in.Operator, Reason: in.Reason})
			g, n, _ := d.s.Node(in.Node)
			d.startUndo(g, n.UndoAttempt+1)
		case n.Held:
			if in.Params != nil && !json.Valid(in.Params) {
				return reject(in.Node, "params are not JSON")
			}
			d.must(&events.OperatorRetry{Node: in.Node, Operator: in.Operator, Reason: in.Reason, Params: in.Params})
			g, n, _ := d.s.Node(in.Node)
			d.restart(g, n.Attempt+1)
		default:
			return reject(in.Node, "only a failed undo, or the failed node of a saga waiting for an operator, can be retried; the node is %s", n.State)
		}
	case Skip:
		_, n, ok := s.Node(in.Node)
		switch {
		case !ok:
			return reject(in.Node, "the saga has no node %q", in.Node)
		case !n.Held:
			return reject(in.Node, "only the failed node of a saga waiting for an operator can be skipped; the node is %s", n.State)
		case in.Reason == "":
			return reject(in.Node, "skipping needs a reason")
		case len(in.Output) == 0 || !json.Valid(in.Output):
			return reject(in.Node, "skipping needs the node's output, as JSON")
		}
		d.must(&events.OperatorSkip{Node: in.Node, Output: in.Output, Operator: in.Operator, Reason: in.Reason})
	case Signal:
		if reason, node, err := d.signal(in); reason != "" {
			return Decision{}, &RejectedError{SagaID: s.SagaID, Node: node, Reason: reason, Err: err}
		}
	case Resolve:
		_, n, ok := s.Node(in.Node)
		if !ok || n.State != NodeUndoFailed {
			return reject(in.Node, "only a failed undo can be resolved")
		}
		if in.Reason == "" {
			return reject(in.Node, "resolving needs a reason")
		}
		d.must(&events.OperatorResolve{Node: in.Node, Operator: in.Operator, Reason: in.Reason})
	case Abandon:
		d.must(&events.OperatorAbandon{Operator: in.Operator, Reason: in.Reason})
		d.must(&events.SagaFinished{Outcome: events.OutcomeAbandoned})
	case InjectFault:
		if err := CheckFault(s.Graph, in.Fault); err != nil {
			return reject(in.Fault.Node, "%v", err)
		}
		d.must(&events.FaultInjected{Fault: in.Fault, Operator: in.Operator, Reason: in.Reason})
	case Pause:
		if s.Paused {
			return reject("", "the saga is paused already")
		}
		d.must(&events.OperatorPause{Operator: in.Operator, Reason: in.Reason})
	case Resume:
		if !s.Paused {
			return reject("", "the saga is not paused")
		}
		d.must(&events.OperatorResume{Operator: in.Operator, Reason: in.Reason})
	case Recover:
		d.recover()
	case Advance:
	default:
		return Decision{}, fmt.Errorf("machine: unknown input %T", in)
	}
	if err != nil {
		return Decision{}, err
	}
	if !d.s.Status.Finished() {
		d.advance()
	}
	if d.err != nil {
		return Decision{}, d.err
	}
	return Decision{Events: d.evs, Commands: d.cmds, State: d.s, Throttled: d.throttled, Admitted: d.admitted}, nil
}

type decider struct {
	s    *State
	now  time.Time
	opt  Options
	evs  []events.Event
	cmds []Command
	err  error // first failure of must
	// throttled: advance held a ready node back
	throttled bool
	// admitted: nodes started within Options.Room
	admitted int
}

// emit applies an event to the working state and records it.
func (d *decider) emit(data events.Data) error {
	e := events.Event{ID: events.LogEventID(d.s.SagaID, d.s.Events), Source: d.opt.Source,
		SagaID: d.s.SagaID, Time: d.now, Epoch: d.opt.Epoch, TraceParent: d.s.TraceParent, Data: data}
	if err := d.s.Apply(e); err != nil {
		return err
	}
	d.evs = append(d.evs, e)
	return nil
}

// must emits an event the decider has already checked is legal. Failing
// here is a bug in the decider, not bad input: Decide reports it as an error
// (never a panic) and nothing of the decision is used.
func (d *decider) must(data events.Data) {
	if d.err != nil {
		return
	}
	if err := d.emit(data); err != nil {
		d.err = fmt.Errorf("machine: internal error, the decider emitted an illegal event (please report): %w", err)
	}
}

// reply handles a participant's reply; it returns a reason if it is ignored.
func (d *decider) reply(r events.ActionReply) (reason, node string) {
	g, n, ok := d.s.Node(r.Node)
	if !ok {
		return fmt.Sprintf("reply for unknown node %q", r.Node), ""
	}
	if want := events.RequestID(d.s.SagaID, r.Node, r.Op, r.Attempt); r.RequestID != want {
		return fmt.Sprintf("reply names request %q, not %q", r.RequestID, want), r.Node
	}
	switch r.Op {
	case events.OpDo:
		if n.State != NodeStarted || r.Attempt > n.Attempt {
			return fmt.Sprintf("reply to attempt %d, but the node is %s at attempt %d", r.Attempt, n.State, n.Attempt), r.Node
		}
		if r.OK && d.s.Status == StatusRunning && n.repeatAction() {
			// An injected fault runs the action again: only the
			// outstanding attempt's success counts.
			if r.Attempt != n.Attempt || !n.Waiting {
				return fmt.Sprintf("success of attempt %d, while an injected repeat awaits attempt %d", r.Attempt, n.Attempt), r.Node
			}
			d.must(&events.NodeRepeated{Node: r.Node, Attempt: r.Attempt, Output: r.Output})
			d.startAction(g, r.Attempt+1)
			return "", ""
		}
		if r.OK {
			// Every attempt shares the idempotency key, so success from an
			// earlier attempt is the node's success.
			d.must(&events.NodeSucceeded{Node: r.Node, Attempt: r.Attempt, Output: r.Output})
			return "", ""
		}
		if r.Attempt != n.Attempt || !n.Waiting {
			return fmt.Sprintf("failure of attempt %d, which is not outstanding", r.Attempt), r.Node
		}
		d.actionFailed(g, n, *r.Error, r.RetryAfter.Std())
	case events.OpUndo:
		if n.State != NodeUndoStarted || r.Attempt > n.UndoAttempt {
			return fmt.Sprintf("reply to undo attempt %d, but the node is %s at undo attempt %d", r.Attempt, n.State, n.UndoAttempt), r.Node
		}
		if r.OK && n.repeatUndo() {
			if r.Attempt != n.UndoAttempt || !n.UndoWaiting {
				return fmt.Sprintf("success of undo attempt %d, while an injected repeat awaits undo attempt %d", r.Attempt, n.UndoAttempt), r.Node
			}
			d.must(&events.UndoRepeated{Node: r.Node, Attempt: r.Attempt})
			d.startUndo(g, r.Attempt+1)
			return "", ""
		}
		if r.OK {
			d.must(&events.UndoFinished{Node: r.Node, Attempt: r.Attempt})
			return "", ""
		}
		if r.Attempt != n.UndoAttempt || !n.UndoWaiting {
			return fmt.Sprintf("undo failure of attempt %d, which is not outstanding", r.Attempt), r.Node
		}
		d.undoFailed(g, n, *r.Error, r.RetryAfter.Std())
	default:
		return fmt.Sprintf("unknown op %q", r.Op), r.Node
	}
	return "", ""
}

// actionFailed handles a failed or timed-out attempt of node g.
func (d *decider) actionFailed(g *saga.GraphNode, n *Node, e events.Error, retryAfter time.Duration) {
	attempt := n.Attempt
	unknown := n.mayHaveRun() || e.Kind == events.ErrorTimeout
	p := d.s.actionPolicy(g.Spec)
	if d.s.Status.Forward() && e.Kind != events.ErrorPermanent && n.actionTries(attempt) < p.MaxAttempts {
		at := d.now.Add(max(d.backoff(p, g.Path, events.OpDo, attempt, n.actionTries(attempt)), retryAfter))
		d.must(&events.NodeAttemptFailed{Node: g.Path, Attempt: attempt, Error: e, RetryAt: at})
		d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerRetry, Op: events.OpDo, Node: g.Path, Attempt: attempt}, At: at})
		return
	}
	final := e
	switch {
	case unknown:
		final = events.Error{Kind: events.ErrorOutcomeUnknown, Message: e.Message}
	case e.Kind == events.ErrorPermanent:
	case !d.s.Status.Forward():
		final = events.Error{Kind: events.ErrorCanceled, Message: "the saga is unwinding: " + e.Message}
	default:
		final = events.Error{Kind: events.ErrorRetriesExhausted, Message: fmt.Sprintf("%d attempts failed; last: %s", n.actionTries(attempt), e.Message)}
	}
	d.must(&events.NodeFailed{Node: g.Path, Attempt: attempt, Error: final})
	d.failed(g, final)
}

// failed follows a node's failure for good: the saga unwinds, or, if the
// node's policy says pause or a pivot has succeeded, waits for an
// operator. An unwinding saga goes on unwinding.
func (d *decider) failed(g *saga.GraphNode, e events.Error) {
	switch {
	case !d.s.Status.Forward():
	case d.s.pauses(g):
		d.must(&events.SagaWaiting{Node: g.Path, Error: e})
	default:
		d.must(&events.SagaUnwinding{Reason: events.UnwindNodeFailed, Node: g.Path})
	}
}

// signal handles a signal for an await node; it returns a reason (and a
// sentinel) if it is refused.
func (d *decider) signal(in Signal) (reason, node string, sentinel error) {
	g, n, ok := d.s.Node(in.Node)
	switch {
	case !ok:
		return fmt.Sprintf("the saga has no node %q", in.Node), "", nil
	case g.Kind != saga.KindAwait:
		return fmt.Sprintf("node %q is a %s node; signals are for await nodes", in.Node, g.Kind), in.Node, nil
	case in.ID == "":
		return "a signal needs an id", in.Node, nil
	case in.Reject == "" && len(in.Data) > 0 && !json.Valid(in.Data):
		return "the signal's data is not JSON", in.Node, nil
	case in.Reject != "" && len(in.Data) > 0:
		return "a signal either gives the node its output (data) or rejects it, not both", in.Node, nil
	case n.Signal != nil && n.Signal.ID == in.ID:
		return fmt.Sprintf("signal %s was taken already", in.ID), in.Node, ErrDuplicateSignal
	case n.Signal != nil:
		return fmt.Sprintf("node %q has taken signal %s already; it takes one", in.Node, n.Signal.ID), in.Node, nil
	case !d.s.Status.Forward():
		return fmt.Sprintf("the saga is %s: no await node takes a signal now", d.s.Status), in.Node, nil
	case n.State == NodeSkipped:
		return fmt.Sprintf("node %q was skipped (its condition was false)", in.Node), in.Node, nil
	case n.State != NodePending && !(n.State == NodeStarted && n.Waiting):
		return fmt.Sprintf("node %q is %s; it no longer waits for a signal", in.Node, n.State), in.Node, nil
	}
	data := in.Data
	if in.Reject == "" && len(data) == 0 {
		data = json.RawMessage("null")
	}
	d.must(&events.SignalReceived{Node: in.Node, ID: in.ID, Data: data, Reject: in.Reject, Sender: in.Sender})
	if n.State == NodeStarted {
		d.takeSignal(g)
	}
	return "", "", nil
}

// takeSignal ends a waiting await node with the signal it took.
func (d *decider) takeSignal(g *saga.GraphNode) {
	n := &d.s.Nodes[g.Index]
	sig := n.Signal
	if sig.Reject != "" {
		e := events.Error{Kind: events.ErrorRejected, Message: fmt.Sprintf("signal %s rejected it: %s", sig.ID, sig.Reject)}
		d.must(&events.NodeFailed{Node: g.Path, Attempt: n.Attempt, Error: e})
		d.failed(g, e)
		return
	}
	d.must(&events.NodeSucceeded{Node: g.Path, Attempt: n.Attempt, Output: sig.Data})
}

// startAwait starts an await node's wait: at once over if it took its
// signal early, else with a timer for its timeout, if it has one.
func (d *decider) startAwait(g *saga.GraphNode, attempt int) {
	var deadline time.Time
	if g.Spec.Timeout > 0 {
		deadline = d.now.Add(g.Spec.Timeout.Std())
	}
	d.must(&events.NodeStarted{Node: g.Path, Attempt: attempt, Deadline: deadline})
	if d.s.Nodes[g.Index].Signal != nil {
		d.takeSignal(g)
		return
	}
	if !deadline.IsZero() {
		d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerTimeout, Op: events.OpDo, Node: g.Path, Attempt: attempt}, At: deadline})
	}
}

// restart runs a held node again, at an operator's request.
func (d *decider) restart(g *saga.GraphNode, attempt int) {
	switch {
	case g.Kind == saga.KindAwait:
		d.startAwait(g, attempt)
	case hasParticipant(g):
		d.startAction(g, attempt)
	default:
		// A node the machine runs failed on its condition: evaluate it
		// again, with the params the operator may have given.
		d.must(&events.NodeStarted{Node: g.Path, Attempt: attempt})
		d.runInternal(g)
	}
}

// undoFailed handles a failed or timed-out undo attempt of node g.
func (d *decider) undoFailed(g *saga.GraphNode, n *Node, e events.Error, retryAfter time.Duration) {
	attempt := n.UndoAttempt
	p := d.s.undoPolicy(g.Spec)
	if e.Kind != events.ErrorPermanent && n.undoTries(attempt) < p.MaxAttempts {
		at := d.now.Add(max(d.backoff(p, g.Path, events.OpUndo, attempt, n.undoTries(attempt)), retryAfter))
		d.must(&events.UndoAttemptFailed{Node: g.Path, Attempt: attempt, Error: e, RetryAt: at})
		d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerRetry, Op: events.OpUndo, Node: g.Path, Attempt: attempt}, At: at})
		return
	}
	final := e
	if e.Kind != events.ErrorPermanent {
		final = events.Error{Kind: events.ErrorRetriesExhausted, Message: fmt.Sprintf("%d undo attempts failed; last: %s", n.undoTries(attempt), e.Message)}
	}
	// The saga is stuck once it comes to rest (advance).
	d.must(&events.UndoFailed{Node: g.Path, Attempt: attempt, Error: final})
}

// timer handles a timer coming due; it returns a reason if it is stale.
// A timer is not checked against the clock: it names its attempt, which is
// enough to tell a stale one, and rejecting one that fires a little early
// (clock skew between the server and this process) would lose it.
func (d *decider) timer(t Timer) string {
	if t.Kind == TimerDeadline {
		return d.deadline()
	}
	g, n, ok := d.s.Node(t.Node)
	if !ok {
		return "unknown node"
	}
	switch {
	case t.Op == events.OpDo && t.Kind == TimerTimeout && g.Kind == saga.KindAwait:
		if n.State != NodeStarted || !n.Waiting || n.Attempt != t.Attempt {
			return "the node no longer waits"
		}
		e := events.Error{Kind: events.ErrorTimeout, Message: fmt.Sprintf("no signal within %s", g.Spec.Timeout.Std())}
		d.must(&events.NodeFailed{Node: g.Path, Attempt: n.Attempt, Error: e})
		d.failed(g, e)
	case t.Op == events.OpDo && t.Kind == TimerTimeout:
		if n.State != NodeStarted || !n.Waiting || n.Attempt != t.Attempt {
			return "the attempt is no longer outstanding"
		}
		d.actionFailed(g, n, events.Error{Kind: events.ErrorTimeout, Message: fmt.Sprintf("no reply to attempt %d within %s", t.Attempt, d.s.timeout(g.Spec))}, 0)
	case t.Op == events.OpDo && t.Kind == TimerRetry:
		if n.State != NodeStarted || n.Waiting || n.Attempt != t.Attempt || !d.s.Status.Forward() {
			return "no retry is due"
		}
		d.startAction(g, t.Attempt+1)
	case t.Op == events.OpUndo && t.Kind == TimerTimeout:
		if n.State != NodeUndoStarted || !n.UndoWaiting || n.UndoAttempt != t.Attempt {
			return "the undo attempt is no longer outstanding"
		}
		d.undoFailed(g, n, events.Error{Kind: events.ErrorTimeout, Message: fmt.Sprintf("no reply to undo attempt %d within %s", t.Attempt, d.s.timeout(g.Spec))}, 0)
	case t.Op == events.OpUndo && t.Kind == TimerRetry:
		if n.State != NodeUndoStarted || n.UndoWaiting || n.UndoAttempt != t.Attempt {
			return "no undo retry is due"
		}
		d.startUndo(g, t.Attempt+1)
	default:
		return "unknown timer"
	}
	return ""
}

// deadline handles the saga's deadline coming due.
func (d *decider) deadline() string {
	s := d.s
	switch {
	case s.Deadline.IsZero() || s.DeadlinePassed:
		return "no deadline is due"
	case !s.Status.Forward():
		return fmt.Sprintf("the saga is %s already", s.Status)
	}
	then := s.Graph.Def.OnDeadline
	switch {
	case s.PastPivot() != "":
		then = saga.Pause // past a pivot the saga cannot unwind
	case then == "":
		then = saga.Unwind
	}
	d.must(&events.DeadlinePassed{Deadline: s.Deadline, Then: then})
	if then == saga.Unwind {
		d.must(&events.SagaUnwinding{Reason: events.UnwindDeadline})
	}
	return ""
}

// recover re-issues the requests and timers that the log says are pending.
func (d *decider) recover() {
	if s := d.s; !s.Deadline.IsZero() && !s.DeadlinePassed && s.Status.Forward() {
		d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerDeadline}, At: s.Deadline})
	}
	for i, g := range d.s.Graph.Nodes {
		n := &d.s.Nodes[i]
		switch {
		case n.State == NodeStarted && n.Waiting && g.Kind == saga.KindAwait:
			if !n.Deadline.IsZero() {
				d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerTimeout, Op: events.OpDo, Node: g.Path, Attempt: n.Attempt}, At: n.Deadline})
			}
		case n.State == NodeStarted && n.Waiting:
			d.sendAction(g, n.Attempt, n.Deadline, n.NotBefore)
		case n.State == NodeStarted:
			d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerRetry, Op: events.OpDo, Node: g.Path, Attempt: n.Attempt}, At: n.RetryAt})
		case n.State == NodeUndoStarted && n.UndoWaiting:
			d.sendUndo(g, n.UndoAttempt, n.UndoDeadline)
		case n.State == NodeUndoStarted:
			d.cmds = append(d.cmds, ArmTimer{Timer: Timer{Kind: TimerRetry, Op: events.OpUndo, Node: g.Path, Attempt: n.UndoAttempt}, At: n.UndoRetryAt})
		}
	}
}

// advance starts what can start and finishes what can finish.
func (d *decider) advance() {
	s := d.s
	if s.Status == StatusRunning {
		// Parents have lower indexes than children, so one pass in index
		// order also starts the nodes that machine-run nodes make ready.
		for i, g := range s.Graph.Nodes {
			if s.Paused {
				break
			}
			if s.Nodes[i].State != NodePending || !s.parentsSucceeded(i) {
				continue
			}
			if s.scopeSkipped(i) {
				d.must(&events.NodeSkipped{Node: g.Path})
				continue
			}
			if g.When != nil {
				run, err := g.When.Eval(s.params(i), d.whenInputs(g))
				if err != nil {
					e := events.Error{Kind: events.ErrorCondition, Message: fmt.Sprintf("when %q: %v", g.When.Expr, err)}
					d.must(&events.NodeStarted{Node: g.Path, Attempt: 1})
					d.must(&events.NodeFailed{Node: g.Path, Attempt: 1, Error: e})
					d.failed(g, e)
					if s.Status != StatusRunning {
						break
					}
					continue
				}
				if !run {
					d.must(&events.NodeSkipped{Node: g.Path, When: g.When.Expr})
					continue
				}
			}
			switch {
			case hasParticipant(g):
				if !s.Nodes[i].failAction() && !d.admit() {
					continue
				}
				d.startAction(g, 1)
			case g.Kind == saga.KindAwait:
				d.startAwait(g, 1)
			default:
				d.must(&events.NodeStarted{Node: g.Path, Attempt: 1})
				d.runInternal(g)
			}
			if s.Status != StatusRunning {
				break // a failure: unwind, or wait for an operator
			}
		}
	}
	if s.Status == StatusRunning {
		for i := range s.Nodes {
			if !s.Nodes[i].done() {
				return
			}
		}
		out := json.RawMessage("null")
		if s.Graph.Output >= 0 {
			out = s.Nodes[s.Graph.Output].output()
		}
		d.must(&events.SagaFinished{Outcome: events.OutcomeSucceeded, Output: out})
		return
	}
	if s.Status == StatusWaiting {
		return // nodes in flight finish; nothing starts until an operator acts
	}

	// Unwinding or stuck: nodes waiting to retry will not be retried, and
	// await nodes will not take their signal.
	for i, g := range s.Graph.Nodes {
		n := &s.Nodes[i]
		if n.State == NodeStarted && n.Waiting && g.Kind == saga.KindAwait {
			d.must(&events.NodeFailed{Node: g.Path, Attempt: n.Attempt,
				Error: events.Error{Kind: events.ErrorCanceled, Message: "the saga began unwinding while the node waited for its signal"}})
			continue
		}
		if n.State == NodeStarted && !n.Waiting {
			e := events.Error{Kind: events.ErrorCanceled, Message: "the saga began unwinding while the node waited to retry"}
			if n.mayHaveRun() {
				e = events.Error{Kind: events.ErrorOutcomeUnknown, Message: "the saga began unwinding after an attempt timed out or ran"}
			}
			d.must(&events.NodeFailed{Node: g.Path, Attempt: n.Attempt, Error: e})
		}
	}
	// Children have higher indexes than parents, so one pass in reverse
	// index order also undoes the parents that machine-run undos release.
	for i := len(s.Graph.Nodes) - 1; i >= 0; i-- {
		g := s.Graph.Nodes[i]
		if s.Paused {
			break
		}
		if !s.Nodes[i].needsUndo() || !s.childrenSettled(i) {
			continue
		}
		if hasUndoRequest(g) && !s.Nodes[i].failUndo() && !d.admit() {
			continue
		}
		d.startUndo(g, 1)
	}
	if s.Status == StatusStuck {
		return
	}
	if failed := s.failedUndos(); len(failed) > 0 {
		// Stuck once nothing more can happen without an operator, with
		// every failed undo in one event.
		if s.atRest() {
			d.must(&events.SagaStuck{Undos: failed})
		}
		return
	}
	for i := range s.Nodes {
		if !s.Nodes[i].settled() {
			return
		}
	}
	d.must(&events.SagaFinished{Outcome: events.OutcomeUnwound})
}

// admit says whether one more node may start a request now.
func (d *decider) admit() bool {
	if (d.opt.MaxInFlight > 0 && d.s.InFlight() >= d.opt.MaxInFlight) || (d.opt.Limited && d.admitted >= d.opt.Room) {
		d.throttled = true
		return false
	}
	if d.opt.Limited {
		d.admitted++
	}
	return true
}

// whenInputs are the outputs a node's condition reads: every ancestor of
// its scope, nil for a skipped one.
func (d *decider) whenInputs(g *saga.GraphNode) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(g.WhenInputs))
	for name, i := range g.WhenInputs {
		if n := &d.s.Nodes[i]; n.State == NodeSucceeded {
			out[name] = n.Output
		} else {
			out[name] = nil
		}
	}
	return out
}

// runInternal finishes a started node the machine runs itself.
func (d *decider) runInternal(g *saga.GraphNode) {
	n := &d.s.Nodes[g.Index]
	d.must(&events.NodeSucceeded{Node: g.Path, Attempt: n.Attempt, Output: d.internalOutput(g)})
}

func (d *decider) internalOutput(g *saga.GraphNode) json.RawMessage {
	switch g.Kind {
	case saga.KindConstant:
		return g.Spec.Value
	case saga.KindSubsagaStart:
		if g.ParamsFrom >= 0 {
			return d.s.Nodes[g.ParamsFrom].output()
		}
		return d.s.Created.Params
	case saga.KindSubsaga:
		if g.OutputFrom >= 0 {
			return d.s.Nodes[g.OutputFrom].output()
		}
	}
	return json.RawMessage("null")
}

func (d *decider) startAction(g *saga.GraphNode, attempt int) {
	n := &d.s.Nodes[g.Index]
	if n.failAction() {
		e := events.Error{Kind: events.ErrorInjected, Message: "the action fails without running (a fault injected into the saga)"}
		if n.mayHaveRun() {
			// An earlier attempt timed out (it may still take effect) or
			// ran before an injected repeat: the injected failure ends the
			// node, but its outcome is unknown and it is undone (rule 5).
			e = events.Error{Kind: events.ErrorOutcomeUnknown, Message: "the action fails without running (a fault injected into the saga); an earlier attempt timed out or ran, so it may have taken effect"}
		}
		d.must(&events.NodeStarted{Node: g.Path, Attempt: attempt})
		d.must(&events.NodeFailed{Node: g.Path, Attempt: attempt, Error: e})
		d.failed(g, e)
		return
	}
	var notBefore time.Time
	from := d.now
	if n.Fault != nil && n.Fault.Delay > 0 {
		notBefore = d.now.Add(n.Fault.Delay.Std())
		from = notBefore
	}
	deadline := from.Add(d.s.timeout(g.Spec))
	d.must(&events.NodeStarted{Node: g.Path, Attempt: attempt, Deadline: deadline, NotBefore: notBefore})
	d.sendAction(g, attempt, deadline, notBefore)
}

func (d *decider) startUndo(g *saga.GraphNode, attempt int) {
	if d.s.Nodes[g.Index].failUndo() {
		e := events.Error{Kind: events.ErrorInjected, Message: "the undo fails without running (a fault injected into the saga)"}
		d.must(&events.UndoStarted{Node: g.Path, Attempt: attempt})
		d.must(&events.UndoFailed{Node: g.Path, Attempt: attempt, Error: e})
		return
	}
	if !hasUndoRequest(g) {
		// Nothing to undo on a participant: the machine does it.
		d.must(&events.UndoStarted{Node: g.Path, Attempt: attempt})
		d.must(&events.UndoFinished{Node: g.Path, Attempt: attempt})
		return
	}
	deadline := d.now.Add(d.s.timeout(g.Spec))
	d.must(&events.UndoStarted{Node: g.Path, Attempt: attempt, Deadline: deadline})
	d.sendUndo(g, attempt, deadline)
}

func (d *decider) sendAction(g *saga.GraphNode, attempt int, deadline, notBefore time.Time) {
	req := d.request(g, events.OpDo, attempt, deadline)
	req.Outputs = make(map[string]json.RawMessage, len(g.Visible))
	for _, name := range slices.Sorted(maps.Keys(g.Visible)) {
		if n := &d.s.Nodes[g.Visible[name]]; n.State == NodeSkipped {
			req.Skipped = append(req.Skipped, name)
		} else {
			req.Outputs[name] = n.Output
		}
	}
	d.cmds = append(d.cmds,
		SendRequest{Action: g.Spec.Action, ID: events.RequestID(d.s.SagaID, g.Path, events.OpDo, attempt), Request: req, NotBefore: notBefore, TraceParent: d.s.TraceParent},
		ArmTimer{Timer: Timer{Kind: TimerTimeout, Op: events.OpDo, Node: g.Path, Attempt: attempt}, At: deadline})
}

func (d *decider) sendUndo(g *saga.GraphNode, attempt int, deadline time.Time) {
	req := d.request(g, events.OpUndo, attempt, deadline)
	req.Output = d.s.Nodes[g.Index].Output
	if req.Output == nil {
		req.Output = json.RawMessage("null") // the action's outcome is unknown
	}
	d.cmds = append(d.cmds,
		SendRequest{Action: requestSubject(g), ID: events.RequestID(d.s.SagaID, g.Path, events.OpUndo, attempt), Request: req, TraceParent: d.s.TraceParent},
		ArmTimer{Timer: Timer{Kind: TimerTimeout, Op: events.OpUndo, Node: g.Path, Attempt: attempt}, At: deadline})
}

func (d *decider) request(g *saga.GraphNode, op events.Op, attempt int, deadline time.Time) events.ActionRequest {
	return events.ActionRequest{Op: op, Node: g.Path, Action: requestSubject(g), Undo: g.Spec.Undo, Attempt: attempt,
		IdempotencyKey: d.s.SagaID + ":" + g.Path, Params: d.s.params(g.Index), Deadline: deadline}
}

// backoff is the policy's delay after the try-th try of the current round
// (an operator's retry starts a new round, and injected repeats are not
// tries, so neither lengthens the delay), less a jitter chosen by a hash of
// saga, node, op and attempt so that a replay decides the same.
func (d *decider) backoff(p saga.RetryPolicy, node string, op events.Op, attempt, try int) time.Duration {
	delay := p.Delay(try)
	if p.Jitter <= 0 || delay <= 0 {
		return delay
	}
	h := fnv.New64a()
	h.Write([]byte(d.s.SagaID))
	h.Write([]byte(node))
	h.Write([]byte(op))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(attempt))
	h.Write(b[:])
	frac := float64(h.Sum64()>>11) / float64(1<<53)
	return delay - time.Duration(float64(delay)*p.Jitter*frac)
}
