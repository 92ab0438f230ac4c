package saga

import (
	"fmt"
	"slices"
	"strings"
)

// KindSubsagaStart is the kind of the node Compile inserts at the start of
// each subsaga; its output is the subsaga's params. The subsaga node itself
// (path "sub") is the subsaga's end; its output is the subsaga's output.
const KindSubsagaStart Kind = "subsaga-start"

// StartName is the local name of a subsaga's start node ("sub/@start").
const StartName = "@start"

// Graph is a validated definition flattened into one DAG: each subsaga
// becomes a start node, its inner nodes (paths "sub/node") and an end node
// (path "sub"). Nodes are in a topological order: parents come first.
type Graph struct {
	Def   *Definition
	Nodes []*GraphNode
	// Output is the index of the node whose output is the saga's output, or
	// -1 when the saga's output is null.
	Output int
	byPath map[string]int
}

// GraphNode is a node of a compiled graph.
type GraphNode struct {
	Index int
	// Path is the node's name with the names of the subsagas it is in:
	// "vm/disk". It is how events name nodes.
	Path string
	// Name is the node's name within its scope.
	Name string
	// Scope is the path of the subsaga the node is in ("" at top level).
	Scope string
	Kind  Kind
	// Spec is the definition of the node; for a subsaga's start and end, the
	// subsaga node.
	Spec *Node
	// Parents and Children are indexes into Graph.Nodes, ascending.
	Parents, Children []int
	// ScopeStart is the index of the start node of the node's scope, whose
	// output is the scope's params; -1 at top level (the saga's params).
	ScopeStart int
	// ParamsFrom, for a subsaga start, is the node whose output is the
	// subsaga's params; -1 means the saga's params.
	ParamsFrom int
	// OutputFrom, for a subsaga end, is the inner node whose output is the
	// subsaga's output; -1 means null.
	OutputFrom int
	// OwnStart, for a subsaga end, is the index of its start; -1 otherwise.
	OwnStart int
	// When is the node's compiled condition, or nil; a subsaga's is on its
	// start node.
	When *Condition
	// WhenInputs maps the names a condition may read to their nodes.
	WhenInputs map[string]int
	// OnFailure is the node's failure policy, resolved from the node, its
	// definition and the enclosing ones: Unwind or Pause.
	OnFailure FailurePolicy
	// Visible maps the names this node may look up to the node whose output
	// each resolves to: its ancestors in its own scope (a subsaga is seen as
	// its end). With Spec.Reads set, only the declared names.
	Visible map[string]int
}

// Compile validates a definition and flattens it into a Graph.
func Compile(d *Definition) (*Graph, error) {
	if err := Validate(d); err != nil {
		return nil, err
	}
	return build(d), nil
}

// build flattens a definition whose scopes are valid.
func build(d *Definition) *Graph {
	g := &Graph{Def: d, byPath: map[string]int{}}
	_, local := g.compileScope(d, "", nil, -1, Unwind)
	g.Output = outputOf(d, local)
	for _, n := range g.Nodes {
		for _, p := range n.Parents {
			g.Nodes[p].Children = append(g.Nodes[p].Children, n.Index)
		}
	}
	g.computeVisible()
	return g
}

func outputOf(d *Definition, local map[string]int) int {
	if d.Output != "" {
		return local[d.Output]
	}
	if sinks := sinkNames(d); len(sinks) == 1 {
		return local[sinks[0]]
	}
	return -1
}

// sinkNames lists the nodes of d that no node of d depends on.
func sinkNames(d *Definition) []string {
	used := map[string]bool{}
	for _, n := range d.Nodes {
		for _, a := range n.After {
			used[a] = true
		}
	}
	var out []string
	for _, n := range d.Nodes {
		if !used[n.Name] {
			out = append(out, n.Name)
		}
	}
	return out
}

// compileScope adds d's nodes to g. Roots of d depend on entry. It returns
// the indexes of d's sinks and the local name → index map of the scope.
func (g *Graph) compileScope(d *Definition, prefix string, entry []int, scopeStart int, policy FailurePolicy) ([]int, map[string]int) {
	local := map[string]int{}
	if d.OnFailure != "" {
		policy = d.OnFailure
	}
	for _, i := range topoOrder(d) {
		spec := &d.Nodes[i]
		parents := slices.Clone(entry)
		if len(spec.After) > 0 {
			parents = parents[:0]
			for _, a := range spec.After {
				parents = append(parents, local[a])
			}
			slices.Sort(parents)
		}
		scope := trimSlash(prefix)
		nodePolicy := policy
		if spec.OnFailure != "" {
			nodePolicy = spec.OnFailure
		}
		var when *Condition
		if spec.When != "" {
			// Validated: it compiles.
			when, _ = CompileWhen(spec.When)
		}
		if spec.Kind != KindSubsaga {
			local[spec.Name] = g.add(&GraphNode{Path: prefix + spec.Name, Name: spec.Name, Scope: scope, Kind: spec.Kind,
				Spec: spec, Parents: parents, ScopeStart: scopeStart, ParamsFrom: -1, OutputFrom: -1, OwnStart: -1,
				When: when, OnFailure: nodePolicy})
			continue
		}
		paramsFrom := scopeStart
		if spec.Params != "" {
			paramsFrom = local[spec.Params]
		}
		inner := prefix + spec.Name + "/"
		// A subsaga's condition is its start's: false skips the whole
		// subsaga.
		start := g.add(&GraphNode{Path: inner + StartName, Name: StartName, Scope: trimSlash(inner), Kind: KindSubsagaStart,
			Spec: spec, Parents: parents, ScopeStart: scopeStart, ParamsFrom: paramsFrom, OutputFrom: -1, OwnStart: -1,
			When: when, OnFailure: nodePolicy})
		sinks, innerLocal := g.compileScope(spec.Saga, inner, []int{start}, start, nodePolicy)
		local[spec.Name] = g.add(&GraphNode{Path: prefix + spec.Name, Name: spec.Name, Scope: scope, Kind: KindSubsaga,
			Spec: spec, Parents: sinks, ScopeStart: scopeStart, ParamsFrom: -1, OutputFrom: outputOf(spec.Saga, innerLocal), OwnStart: start,
			OnFailure: nodePolicy})
	}
	var sinks []int
	for _, name := range sinkNames(d) {
		sinks = append(sinks, local[name])
	}
	slices.Sort(sinks)
	return sinks, local
}

func (g *Graph) add(n *GraphNode) int {
	n.Index = len(g.Nodes)
	g.Nodes = append(g.Nodes, n)
	g.byPath[n.Path] = n.Index
	return n.Index
}

func trimSlash(s string) string {
	if s == "" {
		return s
	}
	return s[:len(s)-1]
}

// topoOrder orders the nodes of a valid definition so that dependencies come
// first, keeping declaration order where dependencies allow.
func topoOrder(d *Definition) []int {
	byName := make(map[string]int, len(d.Nodes))
	for i, n := range d.Nodes {
		byName[n.Name] = i
	}
	done := make([]bool, len(d.Nodes))
	out := make([]int, 0, len(d.Nodes))
	var visit func(i int)
	visit = func(i int) {
		if done[i] {
			return
		}
		done[i] = true
		for _, a := range d.Nodes[i].After {
			visit(byName[a])
		}
		out = append(out, i)
	}
	for i := range d.Nodes {
		visit(i)
	}
	return out
}

func (g *Graph) computeVisible() {
	for _, n := range g.Nodes {
		if n.When != nil {
			// A condition may read any ancestor of its scope; a
			// subsaga's, those of the scope the subsaga is in.
			scope := n.Scope
			if n.Kind == KindSubsagaStart {
				scope = ""
				if k := strings.LastIndexByte(n.Scope, '/'); k >= 0 {
					scope = n.Scope[:k]
				}
			}
			n.WhenInputs = map[string]int{}
			for a := range g.ancestors(n.Index) {
				if an := g.Nodes[a]; an.Scope == scope && an.Kind != KindSubsagaStart {
					n.WhenInputs[an.Name] = a
				}
			}
		}
		if n.Kind != KindAction {
			continue
		}
		n.Visible = map[string]int{}
		for a := range g.ancestors(n.Index) {
			an := g.Nodes[a]
			if an.Scope == n.Scope && an.Kind != KindSubsagaStart {
				n.Visible[an.Name] = a
			}
		}
		if len(n.Spec.Reads) > 0 {
			declared := map[string]int{}
			for _, r := range n.Spec.Reads {
				declared[r] = n.Visible[r]
			}
			n.Visible = declared
		}
	}
}

func (g *Graph) ancestors(i int) map[int]bool {
	set := map[int]bool{}
	stack := slices.Clone(g.Nodes[i].Parents)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !set[p] {
			set[p] = true
			stack = append(stack, g.Nodes[p].Parents...)
		}
	}
	return set
}

// Node returns the node with the given path.
func (g *Graph) Node(path string) (*GraphNode, bool) {
	i, ok := g.byPath[path]
	if !ok {
		return nil, false
	}
	return g.Nodes[i], true
}

// Lookup resolves name as looked up by the node at index from: the index of
// the node whose output it is. A name that is not a visible ancestor is an
// error that says why, wrapping ErrUnknownNode.
func (g *Graph) Lookup(from int, name string) (int, error) {
	n := g.Nodes[from]
	if i, ok := n.Visible[name]; ok {
		return i, nil
	}
	if _, exists := g.byPath[joinPath(n.Scope, name)]; exists {
		return -1, fmt.Errorf("node %q cannot look up %q: it is not an ancestor of %q (or not declared in reads): %w", n.Path, name, n.Path, ErrUnknownNode)
	}
	return -1, fmt.Errorf("node %q cannot look up %q: no node of that name in its scope: %w", n.Path, name, ErrUnknownNode)
}

func joinPath(scope, name string) string {
	if scope == "" {
		return name
	}
	return scope + "/" + name
}
