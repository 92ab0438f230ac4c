package machine

import (
	"sync"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

// Graphs shares compiled graphs between the sagas started from the same
// definition: a coordinator holding 100,000 sagas of a few kinds keeps a
// few graphs, not 100,000. Graphs and definitions are never modified once
// compiled, so sharing them is safe. It is bounded: past maxInterned
// distinct definitions it starts afresh. A coordinator owns one; a nil
// *Graphs compiles every definition anew (a one-off fold).
type Graphs struct {
	mu       sync.Mutex
	graphs   map[string]interned[saga.Graph]    // by the definition's reference
	defaults map[string]interned[saga.Defaults] // by the defaults' reference
}

// interned is a shared document and its reference, shared too (one
// string, not one per saga).
type interned[T any] struct {
	doc *T
	ref string
}

const maxInterned = 1024

// NewGraphs returns an empty set of shared graphs.
func NewGraphs() *Graphs {
	return &Graphs{graphs: map[string]interned[saga.Graph]{}, defaults: map[string]interned[saga.Defaults]{}}
}

// New returns the state of a saga with an empty log, whose definition
// will be compiled through g.
func (g *Graphs) New(sagaID string) *State {
	s := New(sagaID)
	s.graphs = g
	return s
}

// compile returns the compiled graph of def, shared with every saga whose
// definition encodes the same, and def's reference (events.DefinitionDoc;
// ref if given, worked out if ""), shared as well.
func (g *Graphs) compile(def *saga.Definition, ref string) (*saga.Graph, string, error) {
	if g == nil {
		graph, err := saga.Compile(def)
		return graph, ref, err
	}
	if ref == "" {
		var err error
		if _, ref, err = events.DefinitionDoc(def); err != nil {
			graph, err := saga.Compile(def)
			return graph, "", err
		}
	}
	g.mu.Lock()
	in, ok := g.graphs[ref]
	g.mu.Unlock()
	if ok {
		return in.doc, in.ref, nil
	}
	graph, err := saga.Compile(def)
	if err != nil {
		return nil, "", err
	}
	g.mu.Lock()
	if len(g.graphs) >= maxInterned {
		clear(g.graphs)
	}
	g.graphs[ref] = interned[saga.Graph]{doc: graph, ref: ref}
	g.mu.Unlock()
	return graph, ref, nil
}

// shareDefaults returns the defaults every saga with the same reference
// shares, d's the first time.
func (g *Graphs) shareDefaults(d *saga.Defaults, ref string) (*saga.Defaults, string) {
	if g == nil || d == nil || ref == "" {
		return d, ref
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if in, ok := g.defaults[ref]; ok {
		return in.doc, in.ref
	}
	if len(g.defaults) >= maxInterned {
		clear(g.defaults)
	}
	g.defaults[ref] = interned[saga.Defaults]{doc: d, ref: ref}
	return d, ref
}
