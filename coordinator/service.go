package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

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
		p.enqueue(queryInput{id: id, answer: func(r *run) {
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
	drain, err := c.nc.Subscribe(streams.DrainSubject, func(m *nats.Msg) {
		var req streams.DrainRequest
		if json.Unmarshal(m.Data, &req) != nil || req.Coordinator != c.cfg.Name {
			return // another coordinator's, or malformed: not ours to answer
		}
		// Draining waits for the partitions' inputs to finish: not on the
		// subscription's goroutine.
		c.goFunc(func() {
			var err error
			if req.Undo {
				err = c.Undrain()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err = c.Drain(ctx)
				cancel()
			}
			if err != nil {
				_ = m.Respond([]byte(`{"error":` + strconv.Quote(err.Error()) + `}`))
				return
			}
			b, _ := json.Marshal(c.Status())
			_ = m.Respond(b)
		})
	})
	if err != nil {
		status.Unsubscribe()
		state.Unsubscribe()
		return nil, err
	}
	return []*nats.Subscription{status, state, drain}, nil
}

// GatherStatus asks every coordinator for its status and returns the
// replies that come within window, sorted by name. A request reaches all of
// them, so there is no telling when the last one has answered.
func GatherStatus(ctx context.Context, nc *nats.Conn, window time.Duration) ([]Status, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes soon after
	if err := nc.PublishRequest(streams.StatusSubject, inbox, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	var out []Status
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) || (err != nil && ctx.Err() != nil) {
			break // nobody listens, or the window is over
		}
		if err != nil {
			return nil, err
		}
		var st Status
		if err := json.Unmarshal(m.Data, &st); err != nil {
			return nil, fmt.Errorf("a reply on %s is not a coordinator's status: %w", streams.StatusSubject, err)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
