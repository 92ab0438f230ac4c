package test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/streams"
)

// The coordinator answers status requests, and reports the state it holds
// for a saga it drives; that state equals the fold of the saga's log.
func TestCoordinatorServesStatusAndSagaState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hold := make(chan struct{})
	startRaw(t, e.js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if req.Node == "pay" {
			<-hold
		}
		return succeedAll(req)
	})
	ctx := ctxT(t)
	id, err := e.cl.Start(ctx, trip(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.cl.WaitFor(ctx, id, func(s *client.Saga) bool { n, _ := s.Node("pay"); return n.State == "started" })
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.nc.Request(streams.SagaStateSubject(id), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st coordinator.SagaState
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Coordinator != "c1" || string(st.Status) != s.Status || st.Events != len(s.Timeline) || len(st.Nodes) != len(s.Nodes) {
		t.Fatalf("coordinator reports %+v; the log folds to %s with %d events", st, s.Status, len(s.Timeline))
	}
	for _, n := range s.Nodes {
		if string(st.Nodes[n.Path].State) != n.State {
			t.Fatalf("node %s: coordinator says %s, log says %s", n.Path, st.Nodes[n.Path].State, n.State)
		}
	}
	m, err = e.nc.Request(streams.StatusSubject, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var cs coordinator.Status
	if err := json.Unmarshal(m.Data, &cs); err != nil || cs.Name != "c1" || len(cs.Partitions) != testPartitions || cs.InFlightSagas != 1 {
		t.Fatalf("status %+v (%v)", cs, err)
	}
	close(hold)
	e.wait(id)
}
