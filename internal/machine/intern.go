package machine

import (
	"crypto/sha256"
	"encoding/json"
	"sync"

	"github.com/jetsaga/jetsaga/saga"
)

// Sagas started from the same definition share one compiled graph (and
// definition): a coordinator holding 100,000 sagas of a few kinds keeps a
// few graphs, not 100,000. Graphs and definitions are never modified once
// compiled, so sharing them is safe. The cache is bounded: past
// maxInterned distinct definitions it starts afresh.
var interned = struct {
	sync.Mutex
	graphs map[[sha256.Size]byte]*saga.Graph
}{graphs: map[[sha256.Size]byte]*saga.Graph{}}

const maxInterned = 1024

// compile returns the compiled graph of def, shared with every saga whose
// definition encodes the same.
func compile(def *saga.Definition) (*saga.Graph, error) {
	b, err := json.Marshal(def)
	if err != nil {
		return saga.Compile(def)
	}
	key := sha256.Sum256(b)
	interned.Lock()
	g, ok := interned.graphs[key]
	interned.Unlock()
	if ok {
		return g, nil
	}
	g, err = saga.Compile(def)
	if err != nil {
		return nil, err
	}
	interned.Lock()
	if len(interned.graphs) >= maxInterned {
		clear(interned.graphs)
	}
	interned.graphs[key] = g
	interned.Unlock()
	return g, nil
}
