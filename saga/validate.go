package saga

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// MaxDepth is how deeply subsagas may nest.
const MaxDepth = 8

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Validate checks a definition and returns a *ValidationError listing every
// problem: bad or duplicate names, unknown dependencies, cycles, reads of
// non-ancestors, subsaga params that are not ancestors, bad policies.
func Validate(d *Definition) error {
	if d == nil {
		return &ValidationError{Problems: []Problem{{Msg: "definition is nil"}}}
	}
	if probs := problems(d); len(probs) > 0 {
		return &ValidationError{Saga: d.Name, Problems: probs}
	}
	return nil
}

// problems lists what is wrong with a definition: each scope's problems,
// then, once every scope is sound, those of the flattened graph.
func problems(d *Definition) []Problem {
	probs := validate(d, "", 0)
	if len(probs) == 0 {
		probs = build(d).pivotProblems()
	}
	return probs
}

// validPolicy reports whether p is a failure policy ("" is the default).
func validPolicy(p FailurePolicy) bool { return p == "" || p == Unwind || p == Pause }

// ValidActionName reports whether name can be an action name: dot-separated
// tokens of letters, digits, '_' and '-', so it is a literal NATS subject.
func ValidActionName(name string) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	for i, tok := range strings.Split(name, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token at position %d", name, i+1)
		}
		for _, r := range tok {
			ok := r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
			if !ok {
				return fmt.Errorf("%q has the character %q; use letters, digits, '_', '-' and '.'", name, r)
			}
		}
	}
	return nil
}

func validate(d *Definition, prefix string, depth int) []Problem {
	var probs []Problem
	add := func(node, format string, args ...any) {
		if node != "" || prefix != "" {
			node = prefix + node
		}
		probs = append(probs, Problem{Node: strings.TrimSuffix(node, "/"), Msg: fmt.Sprintf(format, args...)})
	}
	if depth > MaxDepth {
		add("", "subsagas are nested more than %d deep", MaxDepth)
		return probs
	}
	if d.Name == "" {
		add("", "saga name is empty")
	}
	if !validPolicy(d.OnFailure) {
		add("", "on_failure is %q, want unwind or pause", d.OnFailure)
	}
	switch {
	case depth > 0 && (d.Deadline != 0 || d.OnDeadline != ""):
		add("", "deadline and on_deadline apply to the whole saga: set them on the top-level definition, not a subsaga")
	case d.Deadline < 0:
		add("", "deadline %s is negative", d.Deadline.Std())
	case !validPolicy(d.OnDeadline):
		add("", "on_deadline is %q, want unwind or pause", d.OnDeadline)
	case d.OnDeadline != "" && d.Deadline == 0:
		add("", "on_deadline is set but deadline is not")
	}
	if len(d.Nodes) == 0 {
		add("", "saga %q has no nodes", d.Name)
		return probs
	}

	byName := make(map[string]int, len(d.Nodes))
	for i, n := range d.Nodes {
		if !nodeNameRE.MatchString(n.Name) {
			add(n.Name, "bad node name: use 1 to 128 letters, digits, '_', '-', '.', not starting with '-' or '.'")
		}
		if _, dup := byName[n.Name]; dup {
			add(n.Name, "duplicate node name")
			continue
		}
		byName[n.Name] = i
	}

	// Dependencies by index, for cycle and ancestor checks; unknown ones are
	// reported and left out.
	deps := make([][]int, len(d.Nodes))
	for i, n := range d.Nodes {
		seen := map[string]bool{}
		for _, a := range n.After {
			switch j, ok := byName[a]; {
			case seen[a]:
				add(n.Name, "lists dependency %q twice", a)
			case a == n.Name:
				add(n.Name, "depends on itself")
			case !ok:
				add(n.Name, "depends on unknown node %q", a)
			default:
				deps[i] = append(deps[i], j)
			}
			seen[a] = true
		}
	}
	for _, scc := range cycles(deps) {
		names := make([]string, len(scc))
		for k, i := range scc {
			names[k] = d.Nodes[i].Name
		}
		add(names[0], "is on a cycle of dependencies: %s", strings.Join(names, ", "))
	}
	anc := ancestors(deps)
	isAncestor := func(of int, name string) (known, ok bool) {
		j, known := byName[name]
		return known, known && anc[of][j]
	}

	for i, n := range d.Nodes {
		for _, r := range n.Reads {
			if known, ok := isAncestor(i, r); !known {
				add(n.Name, "reads unknown node %q", r)
			} else if !ok {
				add(n.Name, "reads the output of %q, which is not an ancestor", r)
			}
		}
		if n.Timeout < 0 {
			add(n.Name, "timeout %s is negative", n.Timeout.Std())
		}
		if !validPolicy(n.OnFailure) {
			add(n.Name, "on_failure is %q, want unwind or pause", n.OnFailure)
		}
		if n.When != "" {
			if c, err := CompileWhen(n.When); err != nil {
				add(n.Name, "when %q: %v", n.When, err)
			} else {
				for _, r := range c.Refs {
					if known, ok := isAncestor(i, r); !known {
						add(n.Name, "when %q reads the output of unknown node %q", n.When, r)
					} else if !ok {
						add(n.Name, "when %q reads the output of %q, which is not an ancestor", n.When, r)
					}
				}
			}
		}
		if n.Kind != KindAwait && n.Event != "" {
			add(n.Name, "event is for await nodes; this is a %s node", n.Kind)
		}
		switch n.Kind {
		case "":
			add(n.Name, "kind is missing (want action, await, constant or subsaga)")
		case KindAwait:
			if n.Event == "" {
				add(n.Name, "an await node needs the event it waits for (event: order.approved)")
			} else if err := ValidActionName(n.Event); err != nil {
				add(n.Name, "event name %v", err)
			}
			if n.Undo != "" {
				if err := ValidActionName(n.Undo); err != nil {
					add(n.Name, "undo name %v", err)
				}
			}
			if n.UndoRetry != nil {
				for _, msg := range n.UndoRetry.problems() {
					add(n.Name, "undo_retry policy: %s", msg)
				}
			}
			if n.Action != "" || n.Retry != nil || n.Value != nil || n.Saga != nil || n.Params != "" {
				add(n.Name, "an await node has an event, and optionally a timeout and an undo; no action, retry, value, saga or params")
			}
		case KindAction:
			if err := ValidActionName(n.Action); err != nil {
				add(n.Name, "action name %v", err)
			}
			if n.Undo != "" {
				if err := ValidActionName(n.Undo); err != nil {
					add(n.Name, "undo name %v", err)
				}
			}
			for _, p := range []struct {
				what string
				p    *RetryPolicy
			}{{"retry", n.Retry}, {"undo_retry", n.UndoRetry}} {
				if p.p != nil {
					for _, msg := range p.p.problems() {
						add(n.Name, "%s policy: %s", p.what, msg)
					}
				}
			}
			if n.Value != nil || n.Saga != nil || n.Params != "" {
				add(n.Name, "an action node has no value, saga or params")
			}
		case KindConstant:
			if len(n.Value) == 0 {
				add(n.Name, "constant has no value")
			} else if !json.Valid(n.Value) {
				add(n.Name, "constant value is not valid JSON")
			}
			if n.Action != "" || n.Undo != "" || n.Retry != nil || n.UndoRetry != nil || n.Timeout != 0 || n.Saga != nil || n.Params != "" {
				add(n.Name, "a constant node has only a value")
			}
		case KindSubsaga:
			if n.Saga == nil {
				add(n.Name, "subsaga has no saga definition")
			} else {
				probs = append(probs, validate(n.Saga, prefix+n.Name+"/", depth+1)...)
			}
			if n.Params != "" {
				if known, ok := isAncestor(i, n.Params); !known {
					add(n.Name, "subsaga params come from unknown node %q", n.Params)
				} else if !ok {
					add(n.Name, "subsaga params come from %q, which is not an ancestor", n.Params)
				}
			}
			if n.Action != "" || n.Undo != "" || n.Retry != nil || n.UndoRetry != nil || n.Timeout != 0 || n.Value != nil {
				add(n.Name, "a subsaga node has only a saga and params")
			}
		default:
			add(n.Name, "unknown kind %q (want action, await, constant or subsaga)", n.Kind)
		}
	}
	if d.Output != "" {
		if _, ok := byName[d.Output]; !ok {
			add("", "output names unknown node %q", d.Output)
		}
	}
	return probs
}

func (p RetryPolicy) problems() []string {
	var out []string
	if p.MaxAttempts < 1 {
		out = append(out, fmt.Sprintf("max_attempts is %d, want at least 1", p.MaxAttempts))
	}
	if p.InitialDelay < 0 || p.MaxDelay < 0 {
		out = append(out, "delays must not be negative")
	}
	if p.MaxDelay > 0 && p.MaxDelay < p.InitialDelay {
		out = append(out, fmt.Sprintf("max_delay %s is less than initial_delay %s", p.MaxDelay.Std(), p.InitialDelay.Std()))
	}
	if p.Multiplier != 0 && p.Multiplier < 1 {
		out = append(out, fmt.Sprintf("multiplier %g is less than 1", p.Multiplier))
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		out = append(out, fmt.Sprintf("jitter %g is not between 0 and 1", p.Jitter))
	}
	return out
}

// cycles returns the strongly connected components of more than one node
// (self-loops are reported as dependencies on itself), each sorted by index.
func cycles(deps [][]int) [][]int {
	n := len(deps)
	index := make([]int, n)
	low := make([]int, n)
	on := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var out [][]int
	next := 0
	var strong func(v int)
	strong = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		on[v] = true
		for _, w := range deps[v] {
			if index[w] < 0 {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if on[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var scc []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			if len(scc) > 1 {
				slices.Sort(scc)
				out = append(out, scc)
			}
		}
	}
	for v := range n {
		if index[v] < 0 {
			strong(v)
		}
	}
	slices.SortFunc(out, func(a, b []int) int { return a[0] - b[0] })
	return out
}

// ancestors returns, for each node, the set of nodes it transitively depends
// on. It terminates on cyclic graphs too, so checks that need it can run
// alongside the cycle report.
func ancestors(deps [][]int) []map[int]bool {
	out := make([]map[int]bool, len(deps))
	for i := range deps {
		set := map[int]bool{}
		stack := append([]int(nil), deps[i]...)
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !set[j] {
				set[j] = true
				stack = append(stack, deps[j]...)
			}
		}
		out[i] = set
	}
	return out
}
