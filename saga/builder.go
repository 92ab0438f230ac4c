package saga

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Builder assembles a Definition stage by stage. Its methods chain; problems
// are collected and reported together by Build.
type Builder struct {
	def    Definition
	prev   []string // names of the previous stage's nodes
	stages int
	errs   []Problem
}

// New starts a definition with the given name.
func New(name string) *Builder { return &Builder{def: Definition{Name: name}} }

// NodeSpec describes one node for the builder. Its methods return modified
// copies, so a spec can be reused as a template.
type NodeSpec struct {
	node     Node
	explicit bool // After was called: dependencies are exactly node.After
	err      string
}

// Action is a node that runs action on a participant.
func Action(name, action string) NodeSpec {
	return NodeSpec{node: Node{Name: name, Kind: KindAction, Action: action}}
}

// Constant is a node whose output is value, marshalled to JSON.
func Constant(name string, value any) NodeSpec {
	s := NodeSpec{node: Node{Name: name, Kind: KindConstant}}
	b, err := json.Marshal(value)
	if err != nil {
		s.err = fmt.Sprintf("constant value cannot be marshalled to JSON: %v", err)
		return s
	}
	s.node.Value = b
	return s
}

// Subsaga is a node that runs def inline, with the output of the ancestor
// named params as its params ("" for the params of the enclosing scope).
// The definition is copied: later changes to def do not affect this node.
func Subsaga(name string, def *Definition, params string) NodeSpec {
	s := NodeSpec{node: Node{Name: name, Kind: KindSubsaga, Params: params}}
	if def == nil {
		s.err = "subsaga has no definition"
		return s
	}
	s.node.Saga = def.Clone()
	return s
}

// Await is a node that waits for a signal naming it (jetsaga signal SAGA
// NODE); event names what it waits for ("order.approved"). The signal's
// data is its output; a rejection fails it.
func Await(name, event string) NodeSpec {
	return NodeSpec{node: Node{Name: name, Kind: KindAwait, Event: event}}
}

// When sets the node's condition, a CEL expression over params and the
// outputs of its ancestors (CompileWhen); false skips the node.
func (s NodeSpec) When(expr string) NodeSpec { s.node.When = expr; return s }

// Pivot marks the node as the saga's pivot: once it has succeeded the
// saga goes only forward.
func (s NodeSpec) Pivot() NodeSpec { s.node.Pivot = true; return s }

// OnFailure sets what a failure for good of the node does.
func (s NodeSpec) OnFailure(p FailurePolicy) NodeSpec { s.node.OnFailure = p; return s }

// OnFailure sets the failure policy of the nodes that set none.
func (b *Builder) OnFailure(p FailurePolicy) *Builder { b.def.OnFailure = p; return b }

// Deadline bounds the saga's run from its start; on says what happens
// when it passes (Unwind or Pause).
func (b *Builder) Deadline(d time.Duration, on FailurePolicy) *Builder {
	b.def.Deadline, b.def.OnDeadline = Duration(d), on
	return b
}

// Undo sets the action that undoes this node's action.
func (s NodeSpec) Undo(action string) NodeSpec { s.node.Undo = action; return s }

// Retry sets the action's retry policy.
func (s NodeSpec) Retry(p RetryPolicy) NodeSpec { s.node.Retry = &p; return s }

// UndoRetry sets the undo's retry policy.
func (s NodeSpec) UndoRetry(p RetryPolicy) NodeSpec { s.node.UndoRetry = &p; return s }

// Timeout bounds each attempt of the action and of its undo; on an await
// node, the wait.
func (s NodeSpec) Timeout(d time.Duration) NodeSpec { s.node.Timeout = Duration(d); return s }

// After makes the node depend on exactly the named nodes, instead of on the
// previous stage. After() with no names makes it a root.
func (s NodeSpec) After(names ...string) NodeSpec {
	s.node.After = slices.Clone(names)
	s.explicit = true
	return s
}

// Reads declares the ancestors whose outputs the node looks up.
func (s NodeSpec) Reads(names ...string) NodeSpec {
	s.node.Reads = append(slices.Clone(s.node.Reads), names...)
	return s
}

// Then appends a stage of one node.
func (b *Builder) Then(n NodeSpec) *Builder { return b.Parallel(n) }

// Parallel appends a stage whose nodes run concurrently once the previous
// stage has succeeded. An empty stage is an error.
func (b *Builder) Parallel(nodes ...NodeSpec) *Builder {
	b.stages++
	if len(nodes) == 0 {
		b.errs = append(b.errs, Problem{Msg: fmt.Sprintf("stage %d is empty", b.stages)})
		return b
	}
	names := make([]string, 0, len(nodes))
	for _, s := range nodes {
		n := s.node
		if s.err != "" {
			b.errs = append(b.errs, Problem{Node: n.Name, Msg: s.err})
		}
		if !s.explicit {
			n.After = slices.Clone(b.prev)
		}
		b.def.Nodes = append(b.def.Nodes, n)
		names = append(names, n.Name)
	}
	b.prev = names
	return b
}

// Output names the node whose output is the saga's output.
func (b *Builder) Output(node string) *Builder { b.def.Output = node; return b }

// Build validates and returns the definition. The error is a
// *ValidationError listing every problem.
func (b *Builder) Build() (*Definition, error) {
	def := b.def.Clone()
	probs := append(slices.Clone(b.errs), problems(def)...)
	if len(probs) > 0 {
		return nil, &ValidationError{Saga: def.Name, Problems: probs}
	}
	return def, nil
}

// MustBuild is Build for definitions fixed at compile time: it panics on a
// problem.
func (b *Builder) MustBuild() *Definition {
	d, err := b.Build()
	if err != nil {
		panic(err)
	}
	return d
}

// Clone returns a deep copy of the definition.
func (d *Definition) Clone() *Definition { return d.clone(0) }

func (d *Definition) clone(depth int) *Definition {
	if d == nil || depth > MaxDepth {
		// Past MaxDepth the definition is invalid anyway (Validate says so);
		// stopping here keeps a hand-made pointer cycle from recursing forever.
		return d
	}
	c := *d
	c.Nodes = make([]Node, len(d.Nodes))
	for i, n := range d.Nodes {
		n.After = slices.Clone(n.After)
		n.Reads = slices.Clone(n.Reads)
		n.Value = slices.Clone(n.Value)
		if n.Retry != nil {
			r := *n.Retry
			n.Retry = &r
		}
		if n.UndoRetry != nil {
			r := *n.UndoRetry
			n.UndoRetry = &r
		}
		n.Saga = n.Saga.clone(depth + 1)
		c.Nodes[i] = n
	}
	return &c
}
