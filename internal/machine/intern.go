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
	mu     sync.Mutex
	graphs map[string]*saga.Graph // by the definition's reference
}

const maxInterned = 1024

// NewGraphs returns an empty set of shared graphs.
func NewGraphs() *Graphs { return &Graphs{graphs: map[string]*saga.Graph{}} }

// New returns the state of a saga with an empty log, whose definition
// will be compiled through g.
func (g *Graphs) New(sagaID string) *State {
	s := New(sagaID)
	s.graphs = g
	return s
}

// compile returns the compiled graph of def, shared with every saga whose
// definition encodes the same. ref is def's reference
// (events.DefinitionDoc), or "" to work it out.
func (g *Graphs) compile(def *saga.Definition, ref string) (*saga.Graph, error) {
	if g == nil {
		return saga.Compile(def)
	}
	if ref == "" {
		var err error
		if _, ref, err = events.DefinitionDoc(def); err != nil {
			return saga.Compile(def)
		}
	}
	g.mu.Lock()
	graph, ok := g.graphs[ref]
	g.mu.Unlock()
	if ok {
		return graph, nil
	}
	graph, err := saga.Compile(def)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	if len(g.graphs) >= maxInterned {
		clear(g.graphs)
	}
	g.graphs[ref] = graph
	g.mu.Unlock()
	return graph, nil
}
