package saga

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"
)

// Kind is what a node does.
type Kind string

const (
	// KindAction runs a named action on a participant, and its undo when the
	// saga unwinds.
	KindAction Kind = "action"
	// KindConstant outputs a fixed JSON value; it runs no participant.
	KindConstant Kind = "constant"
	// KindSubsaga inlines another definition.
	KindSubsaga Kind = "subsaga"
	// KindAwait waits for a named external event (a signal) for the saga;
	// the signal's data is its output. Its undo, if any, is an action run
	// when the saga unwinds past it.
	KindAwait Kind = "await"
)

// FailurePolicy says what a saga does when a node fails for good (on_failure)
// or when its deadline passes (on_deadline).
type FailurePolicy string

const (
	// Unwind undoes what the saga did (the default).
	Unwind FailurePolicy = "unwind"
	// Pause keeps the saga as it is and waits for an operator: retry the
	// node, skip it with an output, or abort (unwind).
	Pause FailurePolicy = "pause"
)

// Definition is a saga's DAG, as stored in the saga's first log event and as
// read from JSON or YAML files. Dependencies are explicit in this form: the
// builder's stages are resolved into each node's After list.
type Definition struct {
	// Name names the kind of saga ("trip.book"); it need not be unique.
	Name string `json:"name"`
	// Output names the node whose output is the saga's output (and, for a
	// subsaga, the subsaga node's output). Default: the only node nothing
	// depends on; with several such nodes and no Output, the output is null.
	Output string `json:"output,omitempty"`
	// Nodes in declaration order.
	Nodes []Node `json:"nodes"`
	// OnFailure is the failure policy of the nodes that set none; empty
	// means the enclosing definition's, and Unwind at the top.
	OnFailure FailurePolicy `json:"on_failure,omitempty"`
	// Deadline, at the top level only, bounds the saga's run from its
	// start; when it passes before the saga has finished, OnDeadline
	// applies (empty means Unwind).
	Deadline   Duration      `json:"deadline,omitempty"`
	OnDeadline FailurePolicy `json:"on_deadline,omitempty"`
}

// Node is one step of a definition.
type Node struct {
	// Name is unique within its definition: letters, digits, '_', '-', '.'.
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// After lists the nodes of the same definition this node depends on.
	// A node with no dependencies starts as soon as the saga (or subsaga) does.
	After []string `json:"after,omitempty"`
	// Reads declares which ancestors' outputs the node looks up. When set, only
	// those outputs are sent with its requests; when empty, every ancestor's.
	Reads []string `json:"reads,omitempty"`

	// Action is the action name (KindAction), e.g. "payments.charge".
	Action string `json:"action,omitempty"`
	// Undo is the undo action's name; empty means the action needs no undo.
	Undo string `json:"undo,omitempty"`
	// Retry governs the action's attempts; nil means the saga's defaults
	// (DefaultRetry unless the log records others).
	Retry *RetryPolicy `json:"retry,omitempty"`
	// UndoRetry governs the undo's attempts; nil means the saga's defaults
	// (DefaultUndoRetry unless the log records others).
	UndoRetry *RetryPolicy `json:"undo_retry,omitempty"`
	// Timeout bounds each attempt of the action and of the undo; zero means
	// the saga's default (DefaultTimeout unless the log records another).
	// An attempt that times out has an unknown outcome. On a KindAwait
	// node it bounds the wait (zero: no bound), and its undo's attempts
	// take the saga's default.
	Timeout Duration `json:"timeout,omitempty"`

	// When, if set, is a condition (a CEL expression, see CompileWhen) over
	// params and the outputs of ancestors: false skips the node, which then
	// never runs and is never undone, and its dependents go on.
	When string `json:"when,omitempty"`
	// Pivot: once this node has succeeded the saga no longer unwinds past
	// it; failures after it are retried and then wait for an operator.
	Pivot bool `json:"pivot,omitempty"`
	// OnFailure: what a failure for good of this node does; empty means
	// the definition's.
	OnFailure FailurePolicy `json:"on_failure,omitempty"`
	// Event names the signal a KindAwait node waits for ("order.approved");
	// it is documentation and a check: a signal may name it.
	Event string `json:"event,omitempty"`

	// Value is the output of a KindConstant node.
	Value json.RawMessage `json:"value,omitempty"`

	// Saga is the inlined definition of a KindSubsaga node.
	Saga *Definition `json:"saga,omitempty"`
	// Params names the ancestor whose output is the subsaga's params; empty
	// means the subsaga gets the params of the scope it is in.
	Params string `json:"params,omitempty"`
}

// RetryPolicy says how often and how fast a failed attempt is retried.
// Delays grow from InitialDelay by Multiplier up to MaxDelay, less a
// deterministic jitter of up to Jitter of the delay.
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first included (≥ 1).
	MaxAttempts int `json:"max_attempts"`
	// InitialDelay is the wait before the second attempt.
	InitialDelay Duration `json:"initial_delay,omitempty"`
	// MaxDelay caps the wait; zero means no cap.
	MaxDelay Duration `json:"max_delay,omitempty"`
	// Multiplier grows the delay per attempt; zero means 2.
	Multiplier float64 `json:"multiplier,omitempty"`
	// Jitter is the fraction (0 to 1) of a delay that is taken off at random
	// (chosen by a hash of saga, node and attempt, so replays agree).
	Jitter float64 `json:"jitter,omitempty"`
}

// The defaults for nodes that set no policy or timeout of their own. A
// saga's log records the defaults it started with (events.SagaCreated), so
// a release that changes them does not change sagas already running.

// DefaultRetry is the action retry policy of a node that sets none.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, InitialDelay: Duration(time.Second), MaxDelay: Duration(30 * time.Second), Multiplier: 2, Jitter: 0.2}
}

// DefaultUndoRetry is the undo retry policy of a node that sets none.
func DefaultUndoRetry() RetryPolicy {
	return RetryPolicy{MaxAttempts: 10, InitialDelay: Duration(time.Second), MaxDelay: Duration(time.Minute), Multiplier: 2, Jitter: 0.2}
}

// DefaultTimeout bounds an attempt of a node that sets no Timeout.
const DefaultTimeout = 30 * time.Second

// Defaults are the retry policies and attempt timeout of the nodes of a
// saga that set none of their own.
type Defaults struct {
	Retry     RetryPolicy `json:"retry"`
	UndoRetry RetryPolicy `json:"undo_retry"`
	Timeout   Duration    `json:"timeout"`
}

// CurrentDefaults are the defaults of this release: DefaultRetry,
// DefaultUndoRetry and DefaultTimeout.
func CurrentDefaults() Defaults {
	return Defaults{Retry: DefaultRetry(), UndoRetry: DefaultUndoRetry(), Timeout: Duration(DefaultTimeout)}
}

// Problems lists what is wrong with d, if anything.
func (d Defaults) Problems() []string {
	var out []string
	for _, p := range []struct {
		name string
		p    RetryPolicy
	}{{"retry", d.Retry}, {"undo_retry", d.UndoRetry}} {
		for _, prob := range p.p.problems() {
			out = append(out, p.name+": "+prob)
		}
	}
	if d.Timeout <= 0 {
		out = append(out, fmt.Sprintf("timeout is %s, want more than 0", d.Timeout.Std()))
	}
	return out
}

// Delay is the wait after the given failed attempt (1-based) before the next,
// before jitter.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	m := p.Multiplier
	if m == 0 {
		m = 2
	}
	d := float64(p.InitialDelay)
	for i := 1; i < attempt; i++ {
		d *= m
		if p.MaxDelay > 0 && d >= float64(p.MaxDelay) {
			return time.Duration(p.MaxDelay)
		}
	}
	if p.MaxDelay > 0 && d > float64(p.MaxDelay) {
		d = float64(p.MaxDelay)
	}
	return time.Duration(d)
}

// Duration is a time.Duration written as a Go duration string ("1.5s") in
// JSON and YAML.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "250ms" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"1.5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// ParseJSON reads a definition from JSON. Unknown fields are errors, so a
// misspelt field is not silently ignored. The definition is not validated;
// call Validate or Compile.
func ParseJSON(data []byte) (*Definition, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Definition
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("saga: parse definition: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("saga: parse definition: trailing data after the definition")
	}
	return &d, nil
}

// ParseYAML reads a definition from YAML (or JSON, which is YAML too), with
// the same field names as JSON.
func ParseYAML(data []byte) (*Definition, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("saga: parse definition: %w", err)
	}
	return ParseJSON(j)
}

// YAML writes the definition as YAML.
func (d *Definition) YAML() ([]byte, error) {
	j, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}
