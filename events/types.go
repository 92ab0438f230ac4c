package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/saga"
)

// Type is a CloudEvents type attribute. Types carry a version; a change that
// old readers cannot ignore gets a new version.
type Type string

// Saga log event types.
const (
	TypeSagaCreated       Type = "io.jetsaga.saga.created.v1"
	TypeNodeStarted       Type = "io.jetsaga.node.started.v1"
	TypeNodeSucceeded     Type = "io.jetsaga.node.succeeded.v1"
	TypeNodeAttemptFailed Type = "io.jetsaga.node.attempt_failed.v1"
	TypeNodeFailed        Type = "io.jetsaga.node.failed.v1"
	TypeUndoStarted       Type = "io.jetsaga.node.undo_started.v1"
	TypeUndoAttemptFailed Type = "io.jetsaga.node.undo_attempt_failed.v1"
	TypeUndoFinished      Type = "io.jetsaga.node.undo_finished.v1"
	TypeUndoFailed        Type = "io.jetsaga.node.undo_failed.v1"
	TypeSagaUnwinding     Type = "io.jetsaga.saga.unwinding.v1"
	TypeSagaStuck         Type = "io.jetsaga.saga.stuck.v2"
	// TypeSagaStuckV1 is read in logs of earlier releases, never written.
	TypeSagaStuckV1     Type = "io.jetsaga.saga.stuck.v1"
	TypeSagaFinished    Type = "io.jetsaga.saga.finished.v1"
	TypeOperatorAbort   Type = "io.jetsaga.operator.abort.v1"
	TypeOperatorRetry   Type = "io.jetsaga.operator.retry.v1"
	TypeOperatorResolve Type = "io.jetsaga.operator.resolve.v1"
	TypeOperatorAbandon Type = "io.jetsaga.operator.abandon.v1"
	TypeOperatorPause   Type = "io.jetsaga.operator.pause.v1"
	TypeOperatorResume  Type = "io.jetsaga.operator.resume.v1"
	// Fault injection (see Fault).
	TypeFaultInjected Type = "io.jetsaga.fault.injected.v1"
	TypeNodeRepeated  Type = "io.jetsaga.node.repeated.v1"
	TypeUndoRepeated  Type = "io.jetsaga.node.undo_repeated.v1"
	// Waits, conditions, failure policies and deadlines.
	TypeNodeSkipped    Type = "io.jetsaga.node.skipped.v1"
	TypeSignalReceived Type = "io.jetsaga.signal.received.v1"
	TypeOperatorSkip   Type = "io.jetsaga.operator.skip.v1"
	TypeDeadlinePassed Type = "io.jetsaga.saga.deadline_passed.v1"
	TypeSagaWaiting    Type = "io.jetsaga.saga.waiting.v1"
)

// Command types: what clients send coordinators on jetsaga.cmd.<partition>.
const (
	TypeCommandStart    Type = "io.jetsaga.command.start.v1"
	TypeCommandOperator Type = "io.jetsaga.command.operator.v1"
	// TypeCommandSignal is a signal for an await node; other languages
	// send it too (docs/protocol.md).
	TypeCommandSignal Type = "io.jetsaga.command.signal.v1"
)

// Participant message types.
const (
	TypeActionRequest Type = "io.jetsaga.action.request.v1"
	TypeActionReply   Type = "io.jetsaga.action.reply.v1"
)

// Sources of events.
const (
	SourceCoordinator = "/jetsaga/coordinator"
	SourceParticipant = "/jetsaga/participant"
)

// Data is the typed body of an event; each type of event has one.
type Data interface {
	// EventType is the CloudEvents type of events with this body.
	EventType() Type
	// check reports the first required field that is missing or wrong.
	check() (field, reason string)
}

// newData returns an empty body for a known type.
func newData(t Type) (Data, bool) {
	switch t {
	case TypeSagaCreated:
		return &SagaCreated{}, true
	case TypeNodeStarted:
		return &NodeStarted{}, true
	case TypeNodeSucceeded:
		return &NodeSucceeded{}, true
	case TypeNodeAttemptFailed:
		return &NodeAttemptFailed{}, true
	case TypeNodeFailed:
		return &NodeFailed{}, true
	case TypeUndoStarted:
		return &UndoStarted{}, true
	case TypeUndoAttemptFailed:
		return &UndoAttemptFailed{}, true
	case TypeUndoFinished:
		return &UndoFinished{}, true
	case TypeUndoFailed:
		return &UndoFailed{}, true
	case TypeSagaUnwinding:
		return &SagaUnwinding{}, true
	case TypeSagaStuck:
		return &SagaStuck{}, true
	case TypeSagaStuckV1:
		return &SagaStuckV1{}, true
	case TypeSagaFinished:
		return &SagaFinished{}, true
	case TypeOperatorAbort:
		return &OperatorAbort{}, true
	case TypeOperatorRetry:
		return &OperatorRetry{}, true
	case TypeOperatorResolve:
		return &OperatorResolve{}, true
	case TypeOperatorAbandon:
		return &OperatorAbandon{}, true
	case TypeOperatorPause:
		return &OperatorPause{}, true
	case TypeOperatorResume:
		return &OperatorResume{}, true
	case TypeFaultInjected:
		return &FaultInjected{}, true
	case TypeNodeRepeated:
		return &NodeRepeated{}, true
	case TypeUndoRepeated:
		return &UndoRepeated{}, true
	case TypeNodeSkipped:
		return &NodeSkipped{}, true
	case TypeSignalReceived:
		return &SignalReceived{}, true
	case TypeOperatorSkip:
		return &OperatorSkip{}, true
	case TypeDeadlinePassed:
		return &DeadlinePassed{}, true
	case TypeSagaWaiting:
		return &SagaWaiting{}, true
	case TypeCommandSignal:
		return &Signal{}, true
	case TypeCommandStart:
		return &StartSaga{}, true
	case TypeCommandOperator:
		return &OperatorCommand{}, true
	case TypeActionRequest:
		return &ActionRequest{}, true
	case TypeActionReply:
		return &ActionReply{}, true
	}
	return nil, false
}

// ErrorKind classifies a node's or attempt's error.
type ErrorKind string

const (
	// ErrorTransient: the attempt failed and changed nothing; it may be retried.
	ErrorTransient ErrorKind = "transient"
	// ErrorTimeout: no reply came within the attempt's timeout; the outcome
	// of that attempt is unknown.
	ErrorTimeout ErrorKind = "timeout"
	// ErrorPermanent: the participant says retrying will not help.
	ErrorPermanent ErrorKind = "permanent"
	// ErrorRetriesExhausted: every attempt allowed by the policy failed.
	ErrorRetriesExhausted ErrorKind = "retries_exhausted"
	// ErrorOutcomeUnknown: retries ran out and at least one attempt timed
	// out, so the action may have happened; its undo runs.
	ErrorOutcomeUnknown ErrorKind = "outcome_unknown"
	// ErrorCanceled: the saga began unwinding while the node waited to retry.
	ErrorCanceled ErrorKind = "canceled"
	// ErrorInjected: a fault injected into the saga (Fault) failed the
	// action or undo without running it.
	ErrorInjected ErrorKind = "injected"
	// ErrorCondition: the node's `when` could not be evaluated (the
	// message has the expression and CEL's error); the node did not run.
	ErrorCondition ErrorKind = "condition"
	// ErrorRejected: an await node's signal rejected it.
	ErrorRejected ErrorKind = "rejected"
)

// Error is an error recorded in the log or sent in a reply.
type Error struct {
	Kind    ErrorKind `json:"kind"`
	Message string    `json:"message"`
}

func (e Error) String() string { return fmt.Sprintf("%s: %s", e.Kind, e.Message) }

func checkNode(node string, attempt int) (string, string) {
	if node == "" {
		return "data.node", "is empty"
	}
	if attempt < 1 {
		return "data.attempt", fmt.Sprintf("is %d, want at least 1", attempt)
	}
	return "", ""
}

func checkError(e Error, kinds ...ErrorKind) (string, string) {
	for _, k := range kinds {
		if e.Kind == k {
			return "", ""
		}
	}
	return "data.error.kind", fmt.Sprintf("is %q, want one of %v", e.Kind, kinds)
}

// SagaCreated is the first event of every saga: its DAG and params, so
// recovery needs no code and a changed definition does not affect the run.
//
// The definition and defaults are stored once each, content-addressed
// (DefinitionDoc, DefaultsDoc), and a log written by this release refers
// to them by DefinitionRef and DefaultsRef; readers fill Definition and
// Defaults from the documents (see internal/defs). Logs of earlier
// releases hold them inline, without references.
type SagaCreated struct {
	Definition *saga.Definition `json:"definition,omitempty"`
	// DefinitionRef names the stored definition (Ref).
	DefinitionRef string          `json:"definition_ref,omitempty"`
	Params        json.RawMessage `json:"params"`
	// IdempotencyKey, when the client gave one, maps to this saga only.
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	// Defaults are the retry policies and timeout of the nodes that set
	// none, as the coordinator that created the saga had them: recorded so
	// that folding the log never depends on a release's defaults. Logs
	// written before they were recorded have none; see machine.Fold.
	Defaults *saga.Defaults `json:"defaults,omitempty"`
	// DefaultsRef names the stored defaults (Ref).
	DefaultsRef string `json:"defaults_ref,omitempty"`
}

// Unresolved reports whether c refers to a stored document it does not
// hold yet.
func (d *SagaCreated) Unresolved() bool {
	return d.Definition == nil && d.DefinitionRef != "" || d.Defaults == nil && d.DefaultsRef != ""
}

// logged is what the log holds of d: references instead of the documents
// they name.
func (d *SagaCreated) logged() *SagaCreated {
	c := *d
	if c.DefinitionRef != "" {
		c.Definition = nil
	}
	if c.DefaultsRef != "" {
		c.Defaults = nil
	}
	return &c
}

// Differences names what makes a start of the same saga (same id or
// idempotency key) a different request: "definition" and/or "params", or
// none. Both are compared as JSON values: key order and white space do
// not count. Metadata, faults, trace context and recorded defaults are not
// part of the request.
func (d *SagaCreated) Differences(o *SagaCreated) []string {
	var out []string
	if !sameDefinition(d, o) {
		out = append(out, "definition")
	}
	if !sameJSON(d.Params, o.Params) {
		out = append(out, "params")
	}
	return out
}

// sameDefinition compares the definitions of two starts, or their
// references when one holds only its reference.
func sameDefinition(a, b *SagaCreated) bool {
	if a.Definition != nil && b.Definition != nil {
		return sameJSON(a.Definition, b.Definition)
	}
	refOf := func(c *SagaCreated) string {
		if c.DefinitionRef != "" || c.Definition == nil {
			return c.DefinitionRef
		}
		_, ref, err := DefinitionDoc(c.Definition)
		if err != nil {
			return ""
		}
		return ref
	}
	ra, rb := refOf(a), refOf(b)
	return ra != "" && ra == rb
}

// refPrefix begins every reference to a stored document.
const refPrefix = "sha256-"

// Ref is the reference to a stored document: "sha256-" and the
// unpadded base64url of the SHA-256 of its bytes (43 characters).
func Ref(doc []byte) string {
	sum := sha256.Sum256(doc)
	return refPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// ValidRef reports whether ref is a reference Ref could return.
func ValidRef(ref string) bool {
	digest, ok := strings.CutPrefix(ref, refPrefix)
	if !ok || len(digest) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(digest)
	return err == nil
}

// DefinitionDoc returns the document def is stored as (its JSON
// encoding: the same definition always encodes the same) and its
// reference.
func DefinitionDoc(def *saga.Definition) ([]byte, string, error) {
	b, err := json.Marshal(def)
	if err != nil {
		return nil, "", fmt.Errorf("events: encode definition: %w", err)
	}
	return b, Ref(b), nil
}

// DefaultsDoc returns the document defaults are stored as and its
// reference.
func DefaultsDoc(d *saga.Defaults) ([]byte, string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, "", fmt.Errorf("events: encode defaults: %w", err)
	}
	return b, Ref(b), nil
}

// sameJSON reports whether a and b encode the same JSON value.
func sameJSON(a, b any) bool {
	ca, errA := canonicalJSON(a)
	cb, errB := canonicalJSON(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

// canonicalJSON encodes v with object keys sorted and numbers as written.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 || string(raw) == "null" {
		return []byte("null"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	return json.Marshal(tree)
}

// NodeStarted: an attempt of the node's action is about to be requested.
// Deadline is when the attempt times out.
type NodeStarted struct {
	Node     string    `json:"node"`
	Attempt  int       `json:"attempt"`
	Deadline time.Time `json:"deadline,omitzero"`
	// NotBefore, when set, holds the request back until then: an injected
	// delay (Fault.Delay). Deadline counts from it.
	NotBefore time.Time `json:"not_before,omitzero"`
}

// NodeSucceeded carries the node's output.
type NodeSucceeded struct {
	Node    string          `json:"node"`
	Attempt int             `json:"attempt"`
	Output  json.RawMessage `json:"output"`
}

// NodeAttemptFailed: an attempt failed transiently or timed out; the next
// attempt starts at RetryAt.
type NodeAttemptFailed struct {
	Node    string    `json:"node"`
	Attempt int       `json:"attempt"`
	Error   Error     `json:"error"`
	RetryAt time.Time `json:"retry_at"`
}

// NodeFailed: the node's action failed for good.
type NodeFailed struct {
	Node    string `json:"node"`
	Attempt int    `json:"attempt"`
	Error   Error  `json:"error"`
}

// UndoStarted: an attempt of the node's undo is about to be requested.
type UndoStarted struct {
	Node     string    `json:"node"`
	Attempt  int       `json:"attempt"`
	Deadline time.Time `json:"deadline,omitzero"`
}

// UndoAttemptFailed: an undo attempt failed; the next starts at RetryAt.
type UndoAttemptFailed struct {
	Node    string    `json:"node"`
	Attempt int       `json:"attempt"`
	Error   Error     `json:"error"`
	RetryAt time.Time `json:"retry_at"`
}

// UndoFinished: the node's undo succeeded.
type UndoFinished struct {
	Node    string `json:"node"`
	Attempt int    `json:"attempt"`
}

// UndoFailed: the node's undo failed for good; the saga is stuck until an
// operator acts.
type UndoFailed struct {
	Node    string `json:"node"`
	Attempt int    `json:"attempt"`
	Error   Error  `json:"error"`
}

// UnwindReason says why a saga unwinds.
type UnwindReason string

const (
	UnwindNodeFailed UnwindReason = "node_failed"
	UnwindAborted    UnwindReason = "aborted"
	// UnwindDeadline: the saga's deadline passed (on_deadline unwind).
	UnwindDeadline UnwindReason = "deadline"
)

// SagaUnwinding: the saga starts no new forward nodes and undoes what it did.
type SagaUnwinding struct {
	Reason UnwindReason `json:"reason"`
	// Node is the failed node that caused it (Reason node_failed).
	Node string `json:"node,omitempty"`
}

// SagaStuck: the saga has come to rest with failed undos. At least one
// undo failed for good, and nothing more can happen without an operator:
// no action or undo is outstanding or waiting to retry, and no other undo
// can start. It stays so until an operator retries or resolves a failed
// undo (the saga unwinds again, and is stuck again if it comes to rest
// with failed undos) or abandons the saga.
type SagaStuck struct {
	// Undos are every failed undo of the saga, in graph order.
	Undos []FailedUndo `json:"undos"`
}

// SagaStuckV1 is saga.stuck as releases before SagaStuck wrote it, read in
// their logs and never written: an undo failed for good, possibly while
// other undos still ran (and a later one could fail and be stuck again).
type SagaStuckV1 struct {
	Node  string `json:"node"`
	Error Error  `json:"error"`
}

// FailedUndo is a node whose undo failed for good, and its last error.
type FailedUndo struct {
	Node  string `json:"node"`
	Error Error  `json:"error"`
}

// Outcome is how a saga ended.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeUnwound   Outcome = "unwound"
	OutcomeAbandoned Outcome = "abandoned"
)

// SagaFinished is the last event of a saga.
type SagaFinished struct {
	Outcome Outcome `json:"outcome"`
	// Output is the saga's output, for OutcomeSucceeded.
	Output json.RawMessage `json:"output,omitempty"`
}

// OperatorAbort: an operator asked a running saga to unwind.
type OperatorAbort struct {
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason"`
}

// OperatorRetry: an operator asked for a failed undo to be tried again,
// or, in a saga waiting for an operator, a failed action.
type OperatorRetry struct {
	Node     string `json:"node"`
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Params, for an action, replace the params of the node's requests
	// from this retry on.
	Params json.RawMessage `json:"params,omitempty"`
}

// OperatorSkip: in a saga waiting for an operator, an operator declared a
// failed node succeeded, with Output as its output.
type OperatorSkip struct {
	Node     string          `json:"node"`
	Output   json.RawMessage `json:"output"`
	Operator string          `json:"operator,omitempty"`
	Reason   string          `json:"reason"`
}

// NodeSkipped: the node's condition was false (or its subsaga was
// skipped): it never runs and is never undone; its dependents go on.
type NodeSkipped struct {
	Node string `json:"node"`
	// When is the condition that was false; empty when the node's subsaga
	// was skipped.
	When string `json:"when,omitempty"`
}

// SignalReceived: a signal for an await node was taken. A node that has
// not started yet keeps it until it does; a waiting node succeeds with Data
// as its output, or fails if the signal rejects it.
type SignalReceived struct {
	Node string `json:"node"`
	// ID is the signal's id: a signal with an id already taken is a
	// duplicate.
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data,omitempty"`
	// Reject, when set, is why the signal rejects the node.
	Reject string `json:"reject,omitempty"`
	Sender string `json:"sender,omitempty"`
}

// SagaWaiting: a node failed for good and its failure policy (on_failure:
// pause, or a pivot before it) keeps the saga as it is, waiting for an
// operator to retry the node, skip it, or abort the saga.
type SagaWaiting struct {
	Node  string `json:"node"`
	Error Error  `json:"error"`
}

// DeadlinePassed: the saga's deadline passed before it finished. Then is
// what follows: unwind (a saga.unwinding follows), or pause (the saga is
// paused; past a pivot, a deadline pauses whatever on_deadline says).
type DeadlinePassed struct {
	Deadline time.Time          `json:"deadline"`
	Then     saga.FailurePolicy `json:"then"`
}

// Signal is a command: a signal for an await node of a saga (the event's
// subject). The event's id is the signal's id, which deduplicates it.
type Signal struct {
	Node string          `json:"node"`
	Data json.RawMessage `json:"data,omitempty"`
	// Reject, when set, fails the node with this reason instead.
	Reject string `json:"reject,omitempty"`
	Sender string `json:"sender,omitempty"`
}

// OperatorResolve: an operator declared a failed undo done by other means.
type OperatorResolve struct {
	Node     string `json:"node"`
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason"`
}

// OperatorAbandon: an operator gave up on a saga; it ends as it is.
type OperatorAbandon struct {
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason"`
}

// OperatorPause: an operator paused the saga: no node's action or undo
// starts until it is resumed; requests already sent finish (and their
// retries run).
type OperatorPause struct {
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// OperatorResume: an operator resumed a paused saga.
type OperatorResume struct {
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// MaxRepeat bounds Fault.Repeat and Fault.UndoRepeat.
const MaxRepeat = 100

// MaxFaultDelay bounds Fault.Delay.
const MaxFaultDelay = 24 * time.Hour

// Fault is a fault injected into one node of a saga, to test how the saga
// and its participants cope (the sagatest package is built on it). Faults
// are events in the saga's log (FaultInjected), so they survive a
// coordinator's crash and show in audits. A node has at most one Fault:
// injecting another replaces it, and a Fault with only Node set clears it.
// Faults apply to action nodes only.
type Fault struct {
	Node string `json:"node"`
	// FailAction: the node's action fails for good (error kind injected)
	// without being requested, and the saga unwinds.
	FailAction bool `json:"fail_action,omitempty"`
	// FailUndo: the node's undo fails for good (error kind injected)
	// without being requested, and the saga is stuck.
	FailUndo bool `json:"fail_undo,omitempty"`
	// Repeat: the action runs this many times in all (0 and 1: once). Each
	// run is a new attempt with the same idempotency key; the last run's
	// output is kept. Repeats do not count against the retry policy.
	Repeat int `json:"repeat,omitempty"`
	// UndoRepeat is Repeat for the node's undo.
	UndoRepeat int `json:"undo_repeat,omitempty"`
	// Delay holds each request of the action back this long.
	Delay saga.Duration `json:"delay,omitempty"`
}

// Clears reports whether f clears its node's fault.
func (f Fault) Clears() bool { return f == Fault{Node: f.Node} }

// String describes the fault: "fail action, repeat undo 2".
func (f Fault) String() string {
	var parts []string
	if f.FailAction {
		parts = append(parts, "fail action")
	}
	if f.FailUndo {
		parts = append(parts, "fail undo")
	}
	if f.Repeat > 1 {
		parts = append(parts, fmt.Sprintf("repeat action %d", f.Repeat))
	}
	if f.UndoRepeat > 1 {
		parts = append(parts, fmt.Sprintf("repeat undo %d", f.UndoRepeat))
	}
	if f.Delay > 0 {
		parts = append(parts, "delay "+f.Delay.Std().String())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Validate reports the fault's first bad field.
func (f Fault) Validate() error {
	if field, reason := f.check(""); field != "" {
		return fmt.Errorf("fault %s %s", field, reason)
	}
	return nil
}

func (f Fault) check(prefix string) (string, string) {
	switch {
	case f.Node == "":
		return prefix + "node", "is empty"
	case f.Repeat < 0 || f.Repeat > MaxRepeat:
		return prefix + "repeat", fmt.Sprintf("is %d, want 0 to %d", f.Repeat, MaxRepeat)
	case f.UndoRepeat < 0 || f.UndoRepeat > MaxRepeat:
		return prefix + "undo_repeat", fmt.Sprintf("is %d, want 0 to %d", f.UndoRepeat, MaxRepeat)
	case f.Delay < 0 || f.Delay.Std() > MaxFaultDelay:
		return prefix + "delay", fmt.Sprintf("is %s, want 0 to %s", f.Delay.Std(), MaxFaultDelay)
	}
	return "", ""
}

// FaultInjected sets (or clears) the fault of one node.
type FaultInjected struct {
	Fault
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// NodeRepeated: an attempt of the action succeeded, and an injected fault
// asks for it to run again; Output is that run's output, discarded.
type NodeRepeated struct {
	Node    string          `json:"node"`
	Attempt int             `json:"attempt"`
	Output  json.RawMessage `json:"output,omitempty"`
}

// UndoRepeated: an attempt of the undo succeeded, and an injected fault
// asks for it to run again.
type UndoRepeated struct {
	Node    string `json:"node"`
	Attempt int    `json:"attempt"`
}

// StartSaga asks a coordinator to start a saga (the event's subject is the
// new saga's id). Starting a saga that exists does nothing: the id, or the
// idempotency key it is derived from, names one saga only.
type StartSaga struct {
	SagaCreated
	// Faults are injected as the saga is created (see Fault).
	Faults []Fault `json:"faults,omitempty"`
}

// OperatorAction is what an operator command asks.
type OperatorAction string

const (
	// ActionAbort unwinds a running saga.
	ActionAbort OperatorAction = "abort"
	// ActionRetry runs a failed undo again.
	ActionRetry OperatorAction = "retry"
	// ActionResolve declares a failed undo done by other means.
	ActionResolve OperatorAction = "resolve"
	// ActionAbandon ends a saga as it is.
	ActionAbandon OperatorAction = "abandon"
	// ActionFault injects a fault into a node (or clears it).
	ActionFault OperatorAction = "fault"
	// ActionPause holds a saga's new nodes back; ActionResume lets them go.
	ActionPause  OperatorAction = "pause"
	ActionResume OperatorAction = "resume"
	// ActionSkip declares a failed node of a saga waiting for an operator
	// succeeded with Output.
	ActionSkip OperatorAction = "skip"
)

// OperatorCommand asks a coordinator to act on a saga for an operator.
type OperatorCommand struct {
	Action OperatorAction `json:"action"`
	// Node is the node to retry or resolve.
	Node     string `json:"node,omitempty"`
	Operator string `json:"operator,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Fault is the fault to inject, for ActionFault.
	Fault *Fault `json:"fault,omitempty"`
	// Params, for ActionRetry of a failed action, replace its params.
	Params json.RawMessage `json:"params,omitempty"`
	// Output, for ActionSkip, is the skipped node's output.
	Output json.RawMessage `json:"output,omitempty"`
}

// Op is what a request asks of a participant.
type Op string

const (
	OpDo   Op = "do"
	OpUndo Op = "undo"
)

// ActionRequest asks a participant to run an action or its undo. Both go
// to the request subject of Action (streams.RequestSubject), so the
// participant that registered the action with its undo gets both; Op says
// which to run.
type ActionRequest struct {
	Op Op `json:"op"`
	// Node is the node's path; with the saga id it names the work.
	Node    string `json:"node"`
	Action  string `json:"action"`
	Undo    string `json:"undo,omitempty"`
	Attempt int    `json:"attempt"`
	// IdempotencyKey is the same for every attempt of the node's action (and
	// of its undo): "<saga id>:<node>".
	IdempotencyKey string `json:"idempotency_key"`
	// Params are the params of the node's scope.
	Params json.RawMessage `json:"params"`
	// Outputs are the outputs of the ancestors the node may look up.
	Outputs map[string]json.RawMessage `json:"outputs,omitempty"`
	// Skipped names the ancestors the node may look up that were skipped
	// (their condition was false): they have no output.
	Skipped []string `json:"skipped,omitempty"`
	// Deadline is when the coordinator stops waiting for this attempt.
	Deadline time.Time `json:"deadline,omitzero"`
	// Output is, for OpUndo, the output of the action being undone (null when
	// its outcome is unknown).
	Output json.RawMessage `json:"output,omitempty"`
	// ReplyTo is the subject to publish the reply on.
	ReplyTo string `json:"reply_to"`
}

// ActionReply is a participant's answer to one request.
type ActionReply struct {
	// RequestID is the id of the request answered.
	RequestID string `json:"request_id"`
	Op        Op     `json:"op"`
	Node      string `json:"node"`
	Attempt   int    `json:"attempt"`
	// OK says whether the action (or undo) succeeded.
	OK     bool            `json:"ok"`
	Output json.RawMessage `json:"output,omitempty"`
	// Error, when !OK: kind transient or permanent.
	Error *Error `json:"error,omitempty"`
	// RetryAfter, for a transient error, asks for the next attempt no
	// sooner than this.
	RetryAfter saga.Duration `json:"retry_after,omitempty"`
}

func (*SagaCreated) EventType() Type       { return TypeSagaCreated }
func (*NodeStarted) EventType() Type       { return TypeNodeStarted }
func (*NodeSucceeded) EventType() Type     { return TypeNodeSucceeded }
func (*NodeAttemptFailed) EventType() Type { return TypeNodeAttemptFailed }
func (*NodeFailed) EventType() Type        { return TypeNodeFailed }
func (*UndoStarted) EventType() Type       { return TypeUndoStarted }
func (*UndoAttemptFailed) EventType() Type { return TypeUndoAttemptFailed }
func (*UndoFinished) EventType() Type      { return TypeUndoFinished }
func (*UndoFailed) EventType() Type        { return TypeUndoFailed }
func (*SagaUnwinding) EventType() Type     { return TypeSagaUnwinding }
func (*SagaStuck) EventType() Type         { return TypeSagaStuck }
func (*SagaStuckV1) EventType() Type       { return TypeSagaStuckV1 }
func (*SagaFinished) EventType() Type      { return TypeSagaFinished }
func (*OperatorAbort) EventType() Type     { return TypeOperatorAbort }
func (*OperatorRetry) EventType() Type     { return TypeOperatorRetry }
func (*OperatorResolve) EventType() Type   { return TypeOperatorResolve }
func (*OperatorAbandon) EventType() Type   { return TypeOperatorAbandon }
func (*OperatorPause) EventType() Type     { return TypeOperatorPause }
func (*OperatorResume) EventType() Type    { return TypeOperatorResume }
func (*FaultInjected) EventType() Type     { return TypeFaultInjected }
func (*NodeRepeated) EventType() Type      { return TypeNodeRepeated }
func (*UndoRepeated) EventType() Type      { return TypeUndoRepeated }
func (*StartSaga) EventType() Type         { return TypeCommandStart }
func (*NodeSkipped) EventType() Type       { return TypeNodeSkipped }
func (*SignalReceived) EventType() Type    { return TypeSignalReceived }
func (*OperatorSkip) EventType() Type      { return TypeOperatorSkip }
func (*DeadlinePassed) EventType() Type    { return TypeDeadlinePassed }
func (*SagaWaiting) EventType() Type       { return TypeSagaWaiting }
func (*Signal) EventType() Type            { return TypeCommandSignal }
func (*OperatorCommand) EventType() Type   { return TypeCommandOperator }
func (*ActionRequest) EventType() Type     { return TypeActionRequest }
func (*ActionReply) EventType() Type       { return TypeActionReply }

func (d *SagaCreated) check() (string, string) {
	switch {
	case d.Definition == nil && d.DefinitionRef == "":
		return "data.definition", "is missing"
	case d.DefinitionRef != "" && !ValidRef(d.DefinitionRef):
		return "data.definition_ref", fmt.Sprintf("%q is not a reference (sha256- and 43 base64url characters)", d.DefinitionRef)
	case d.DefaultsRef != "" && !ValidRef(d.DefaultsRef):
		return "data.defaults_ref", fmt.Sprintf("%q is not a reference (sha256- and 43 base64url characters)", d.DefaultsRef)
	}
	if d.Definition != nil {
		if err := saga.Validate(d.Definition); err != nil {
			return "data.definition", err.Error()
		}
		// Both inline and referred to (a batch): readers go by the
		// reference, so it must name this very definition.
		if _, ref, err := DefinitionDoc(d.Definition); d.DefinitionRef != "" && (err != nil || ref != d.DefinitionRef) {
			return "data.definition_ref", fmt.Sprintf("%s does not name data.definition (whose reference is %s)", d.DefinitionRef, ref)
		}
	}
	if d.Defaults != nil && d.DefaultsRef != "" {
		if _, ref, err := DefaultsDoc(d.Defaults); err != nil || ref != d.DefaultsRef {
			return "data.defaults_ref", fmt.Sprintf("%s does not name data.defaults (whose reference is %s)", d.DefaultsRef, ref)
		}
	}
	if len(d.Params) == 0 {
		return "data.params", "is missing (use null for none)"
	}
	if d.Defaults != nil {
		if probs := d.Defaults.Problems(); len(probs) > 0 {
			return "data.defaults", strings.Join(probs, "; ")
		}
	}
	return "", ""
}
func (d *NodeStarted) check() (string, string)   { return checkNode(d.Node, d.Attempt) }
func (d *NodeSucceeded) check() (string, string) { return checkNode(d.Node, d.Attempt) }
func (d *NodeAttemptFailed) check() (string, string) {
	if f, r := checkNode(d.Node, d.Attempt); f != "" {
		return f, r
	}
	return checkError(d.Error, ErrorTransient, ErrorTimeout)
}
func (d *NodeFailed) check() (string, string) {
	if f, r := checkNode(d.Node, d.Attempt); f != "" {
		return f, r
	}
	return checkError(d.Error, ErrorPermanent, ErrorRetriesExhausted, ErrorOutcomeUnknown, ErrorCanceled, ErrorInjected, ErrorCondition, ErrorRejected, ErrorTimeout)
}
func (d *NodeSkipped) check() (string, string) {
	if d.Node == "" {
		return "data.node", "is empty"
	}
	return "", ""
}
func (d *SignalReceived) check() (string, string) {
	switch {
	case d.Node == "":
		return "data.node", "is empty"
	case d.ID == "":
		return "data.id", "is empty"
	case len(d.Data) > 0 && !json.Valid(d.Data):
		return "data.data", "is not JSON"
	}
	return "", ""
}
func (d *OperatorSkip) check() (string, string) {
	switch {
	case d.Node == "":
		return "data.node", "is empty"
	case d.Reason == "":
		return "data.reason", "is empty: say why the node may be treated as succeeded"
	case len(d.Output) == 0 || !json.Valid(d.Output):
		return "data.output", "is missing or not JSON"
	}
	return "", ""
}
func (d *DeadlinePassed) check() (string, string) {
	if d.Then != saga.Unwind && d.Then != saga.Pause {
		return "data.then", fmt.Sprintf("is %q, want unwind or pause", d.Then)
	}
	return "", ""
}
func (d *SagaWaiting) check() (string, string) {
	if d.Node == "" {
		return "data.node", "is empty"
	}
	return "", ""
}
func (d *Signal) check() (string, string) {
	switch {
	case d.Node == "":
		return "data.node", "is empty: name the await node the signal is for"
	case len(d.Data) > 0 && !json.Valid(d.Data):
		return "data.data", "is not JSON"
	case len(d.Data) > 0 && d.Reject != "":
		return "data.reject", "is set with data: a signal either gives the node its output or rejects it"
	}
	return "", ""
}
func (d *UndoStarted) check() (string, string)  { return checkNode(d.Node, d.Attempt) }
func (d *UndoFinished) check() (string, string) { return checkNode(d.Node, d.Attempt) }
func (d *UndoAttemptFailed) check() (string, string) {
	if f, r := checkNode(d.Node, d.Attempt); f != "" {
		return f, r
	}
	return checkError(d.Error, ErrorTransient, ErrorTimeout)
}
func (d *UndoFailed) check() (string, string) {
	if f, r := checkNode(d.Node, d.Attempt); f != "" {
		return f, r
	}
	return checkError(d.Error, ErrorPermanent, ErrorRetriesExhausted, ErrorInjected)
}
func (d *SagaUnwinding) check() (string, string) {
	switch d.Reason {
	case UnwindNodeFailed:
		if d.Node == "" {
			return "data.node", "is empty"
		}
	case UnwindAborted, UnwindDeadline:
	default:
		return "data.reason", fmt.Sprintf("is %q, want node_failed, aborted or deadline", d.Reason)
	}
	return "", ""
}
func (d *SagaStuckV1) check() (string, string) {
	if d.Node == "" {
		return "data.node", "is empty"
	}
	return "", ""
}
func (d *SagaStuck) check() (string, string) {
	if len(d.Undos) == 0 {
		return "data.undos", "is empty"
	}
	for i, u := range d.Undos {
		if u.Node == "" {
			return fmt.Sprintf("data.undos[%d].node", i), "is empty"
		}
	}
	return "", ""
}
func (d *SagaFinished) check() (string, string) {
	switch d.Outcome {
	case OutcomeSucceeded, OutcomeUnwound, OutcomeAbandoned:
		return "", ""
	}
	return "data.outcome", fmt.Sprintf("is %q, want succeeded, unwound or abandoned", d.Outcome)
}
func (d *OperatorAbort) check() (string, string) { return "", "" }
func (d *OperatorRetry) check() (string, string) {
	if d.Node == "" {
		return "data.node", "is empty"
	}
	return "", ""
}
func (d *OperatorResolve) check() (string, string) {
	if d.Node == "" {
		return "data.node", "is empty"
	}
	if d.Reason == "" {
		return "data.reason", "is empty: say why the node may be treated as undone"
	}
	return "", ""
}
func (d *OperatorAbandon) check() (string, string) { return "", "" }
func (d *FaultInjected) check() (string, string)   { return d.Fault.check("data.") }
func (d *OperatorPause) check() (string, string)   { return "", "" }
func (d *OperatorResume) check() (string, string)  { return "", "" }
func (d *NodeRepeated) check() (string, string)    { return checkNode(d.Node, d.Attempt) }
func (d *UndoRepeated) check() (string, string)    { return checkNode(d.Node, d.Attempt) }
func (d *StartSaga) check() (string, string) {
	if d.Definition == nil {
		return "data.definition", "is missing"
	}
	if f, r := d.SagaCreated.check(); f != "" {
		return f, r
	}
	seen := map[string]bool{}
	for i, f := range d.Faults {
		prefix := fmt.Sprintf("data.faults[%d].", i)
		if field, r := f.check(prefix); field != "" {
			return field, r
		}
		if seen[f.Node] {
			return prefix + "node", fmt.Sprintf("%q has two faults; give one per node", f.Node)
		}
		seen[f.Node] = true
	}
	return "", ""
}
func (d *OperatorCommand) check() (string, string) {
	switch d.Action {
	case ActionAbort, ActionAbandon, ActionPause, ActionResume:
	case ActionFault:
		if d.Fault == nil {
			return "data.fault", "is missing: fault needs the fault to inject"
		}
		return d.Fault.check("data.fault.")
	case ActionRetry, ActionResolve:
		if d.Node == "" {
			return "data.node", fmt.Sprintf("is empty: %s needs the node whose undo (or action) failed", d.Action)
		}
		if d.Action == ActionResolve && d.Reason == "" {
			return "data.reason", "is empty: say why the node may be treated as undone"
		}
		if len(d.Params) > 0 && !json.Valid(d.Params) {
			return "data.params", "is not JSON"
		}
	case ActionSkip:
		switch {
		case d.Node == "":
			return "data.node", "is empty: skip needs the failed node"
		case d.Reason == "":
			return "data.reason", "is empty: say why the node may be treated as succeeded"
		case len(d.Output) == 0 || !json.Valid(d.Output):
			return "data.output", "is missing or not JSON: skip gives the node its output"
		}
	default:
		return "data.action", fmt.Sprintf("is %q, want abort, retry, resolve, abandon, fault, pause, resume or skip", d.Action)
	}
	return "", ""
}

func (d *ActionRequest) check() (string, string) {
	if d.Op != OpDo && d.Op != OpUndo {
		return "data.op", fmt.Sprintf("is %q, want do or undo", d.Op)
	}
	if f, r := checkNode(d.Node, d.Attempt); f != "" {
		return f, r
	}
	if d.Action == "" {
		return "data.action", "is empty"
	}
	if d.ReplyTo == "" {
		return "data.reply_to", "is empty"
	}
	return "", ""
}
func (d *ActionReply) check() (string, string) {
	if d.RequestID == "" {
		return "data.request_id", "is empty"
	}
	if d.Op != OpDo && d.Op != OpUndo {
		return "data.op", fmt.Sprintf("is %q, want do or undo", d.Op)
	}
	if f, r := checkNode(d.Node, d.Attempt); f != "" {
		return f, r
	}
	if d.OK {
		if d.Error != nil {
			return "data.error", "is set on a successful reply"
		}
		return "", ""
	}
	if d.Error == nil {
		return "data.error", "is missing on a failed reply"
	}
	if d.RetryAfter < 0 {
		return "data.retry_after", "is negative"
	}
	return checkError(*d.Error, ErrorTransient, ErrorPermanent)
}
