package coordinator

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// SagaState is what a coordinator reports of a saga it drives: the state it
// holds in memory, for `jetsaga replay` to compare with the log's fold.
type SagaState struct {
	SagaID      string                  `json:"saga_id"`
	Coordinator string                  `json:"coordinator"`
	Status      machine.Status          `json:"status"`
	Events      int                     `json:"events"`
	LastSeq     uint64                  `json:"last_seq"`
	Nodes       map[string]machine.Node `json:"nodes"`
}

// serve answers status and saga-state requests on core NATS.
func (c *Coordinator) serve() ([]*nats.Subscription, error) {
	status, err := c.nc.Subscribe(streams.StatusSubject, func(m *nats.Msg) {
		b, _ := json.Marshal(c.Status())
		_ = m.Respond(b)
	})
	if err != nil {
		return nil, err
	}
	state, err := c.nc.Subscribe(streams.SagaStateSubject("*"), func(m *nats.Msg) {
		id := strings.TrimPrefix(m.Subject, streams.SagaStateSubject(""))
		if streams.ValidateSagaID(id) != nil {
			return
		}
		c.mu.Lock()
		p := c.parts[streams.Partition(id, c.cfg.Topology.Partitions)]
		c.mu.Unlock()
		if p == nil {
			return // another coordinator's partition: it answers
		}
		p.enqueue(item{sagaID: id, what: "query", query: func(r *run) {
			if r == nil || r.state.Graph == nil {
				return // not loaded here, or its first append is in flight
			}
			st := SagaState{SagaID: id, Coordinator: c.cfg.Name, Status: r.state.Status, Events: r.state.Events, LastSeq: r.seq, Nodes: map[string]machine.Node{}}
			for i, g := range r.state.Graph.Nodes {
				st.Nodes[g.Path] = r.state.Nodes[i]
			}
			b, _ := json.Marshal(st)
			_ = m.Respond(b)
		}})
	})
	if err != nil {
		status.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{status, state}, nil
}
