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
	"github.com/nats-io/nats.go/micro"

	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/version"
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

// serve registers the coordinator as a NATS micro service
// (streams.CoordinatorService) whose endpoints answer status, saga-state
// and drain requests on core NATS. Every coordinator answers status (no
// queue group); only the one driving a saga answers its state, and only
// the one named in a drain request answers it.
func (c *Coordinator) serve() (micro.Service, error) {
	svc, err := micro.AddService(c.nc, micro.Config{
		Name:        streams.CoordinatorService,
		Version:     version.Version,
		Description: "jetsaga coordinator " + c.cfg.Name + ": drives the sagas of the partitions it leases",
		Metadata: map[string]string{
			"namespace":   string(c.ns),
			"coordinator": c.cfg.Name,
			"partitions":  strconv.Itoa(c.cfg.Topology.Partitions),
		},
		QueueGroupDisabled: true,
		StatsHandler: func(e *micro.Endpoint) any {
			if e.Name != "status" {
				return nil
			}
			return c.serviceStats()
		},
	})
	if err != nil {
		return nil, err
	}
	add := func(name, subject, what string, h micro.HandlerFunc) error {
		return svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject), micro.WithEndpointMetadata(map[string]string{"description": what}))
	}
	err = errors.Join(
		add("status", c.ns.StatusSubject(), "every coordinator answers with its status (jetsaga status)", func(r micro.Request) {
			_ = r.RespondJSON(c.Status())
		}),
		add("saga", c.ns.SagaStateSubject("*"), "the coordinator driving the saga answers with the state it holds (jetsaga replay)", c.serveSagaState),
		add("drain", c.ns.DrainSubject(), "the coordinator named in the request hands off its partitions (jetsaga drain)", c.serveDrain),
	)
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

// ServiceStats is what the coordinator's micro service reports in its
// status endpoint's stats (nats micro stats jetsaga-coordinator).
type ServiceStats struct {
	Coordinator      string `json:"coordinator"`
	Partitions       int    `json:"partitions"`
	InFlightSagas    int    `json:"sagas_in_flight"`
	InFlightRequests int64  `json:"requests_in_flight"`
	Stuck            int64  `json:"sagas_stuck"`
	Waiting          int64  `json:"sagas_waiting"`
	Started          int64  `json:"sagas_started"`
	Finished         int64  `json:"sagas_finished"`
	Rejected         int64  `json:"inputs_rejected"`
}

func (c *Coordinator) serviceStats() ServiceStats {
	st := c.Status()
	return ServiceStats{Coordinator: st.Name, Partitions: len(st.Partitions), InFlightSagas: st.InFlightSagas,
		InFlightRequests: st.InFlightRequests, Stuck: st.Stuck, Waiting: st.Waiting, Started: st.Started,
		Finished: st.Finished, Rejected: st.Rejected}
}

func (c *Coordinator) serveSagaState(m micro.Request) {
	id := strings.TrimPrefix(m.Subject(), c.ns.SagaStateSubject(""))
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
		_ = m.RespondJSON(st)
	}})
}

func (c *Coordinator) serveDrain(m micro.Request) {
	var req streams.DrainRequest
	if json.Unmarshal(m.Data(), &req) != nil || req.Coordinator != c.cfg.Name {
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
			// The body is what clients read; the headers are micro's.
			_ = m.Error("500", err.Error(), []byte(`{"error":`+strconv.Quote(err.Error())+`}`))
			return
		}
		_ = m.RespondJSON(c.Status())
	})
}

// GatherStatus asks every coordinator for its status and returns the
// replies that come within window, sorted by name. A request reaches all of
// them, so there is no telling when the last one has answered.
func GatherStatus(ctx context.Context, nc *nats.Conn, window time.Duration) ([]Status, error) {
	return GatherStatusIn(ctx, nc, "", window)
}

// GatherStatusIn is GatherStatus for the coordinators of namespace ns.
func GatherStatusIn(ctx context.Context, nc *nats.Conn, ns streams.Namespace, window time.Duration) ([]Status, error) {
	subject := ns.StatusSubject()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes soon after
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
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
			return nil, fmt.Errorf("a reply on %s is not a coordinator's status: %w", subject, err)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
