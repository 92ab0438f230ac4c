package machine

import (
	"crypto/sha256"
	"encoding/json"
	"sync"

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
	graphs map[[sha256.Size]byte]*saga.Graph
}

const maxInterned = 1024

// NewGraphs returns an empty set of shared graphs.
func NewGraphs() *Graphs { return &Graphs{graphs: map[[sha256.Size]byte]*saga.Graph{}} }

// New returns the state of a saga with an empty log, whose definition
// will be compiled through g.
func (g *Graphs) New(sagaID string) *State {
	s := New(sagaID)
	s.graphs = g
	return s
}

// compile returns the compiled graph of def, shared with every saga whose
// definition encodes the same.
func (g *Graphs) compile(def *saga.Definition) (*saga.Graph, error) {
	if g == nil {
		return saga.Compile(def)
	}
	b, err := json.Marshal(def)
	if err != nil {
		return saga.Compile(def)
	}
	key := sha256.Sum256(b)
	g.mu.Lock()
	graph, ok := g.graphs[key]
	g.mu.Unlock()
	if ok {
		return graph, nil
	}
	graph, err = saga.Compile(def)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	if len(g.graphs) >= maxInterned {
		clear(g.graphs)
	}
	g.graphs[key] = graph
	g.mu.Unlock()
	return graph, nil
}
