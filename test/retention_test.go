package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// A finished saga's log and summary are removed once its retention has
// passed; a saga that has not finished (stuck here) is kept.
func TestFinishedSagasExpire(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	_, cjs := natstest.Connect(t, srv.ClientURL())
	c, err := coordinator.New(cjs, coordinator.Config{Name: "c1", Topology: testTopo(), Logger: testLogger(t), Retention: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	cl, err := client.New(ctxT(t), js)
	if err != nil {
		t.Fatal(err)
	}
	startRaw(t, js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if req.Action == "ret.stuck" && req.Op == events.OpUndo {
			return nil, &events.Error{Kind: events.ErrorPermanent, Message: "cannot"}, true
		}
		if req.Action == "ret.fail" {
			return nil, &events.Error{Kind: events.ErrorPermanent, Message: "no"}, true
		}
		return succeedAll(req)
	})
	ctx := ctxT(t)
	done, err := cl.Start(ctx, saga.New("short").Then(saga.Action("a", "ret.ok")).MustBuild(), nil)
	if err != nil {
		t.Fatal(err)
	}
	stuck, err := cl.Start(ctx, saga.New("sticky").Then(saga.Action("a", "ret.stuck").Undo("ret.stuck")).Then(saga.Action("b", "ret.fail")).MustBuild(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cl: cl}
	if s := e.wait(done); s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}
	if s := e.wait(stuck); s.Status != client.StatusStuck {
		t.Fatalf("saga %s, want stuck", s.Status)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if _, err := cl.Status(ctx, done); !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("the finished saga's log is still there (%v)", err)
		}
		sums, err := cl.List(ctx, client.Filter{})
		if err != nil {
			return err
		}
		for _, s := range sums {
			if s.ID == done {
				return fmt.Errorf("the finished saga's summary is still listed")
			}
		}
		return nil
	})
	natstest.Eventually(t, 10*time.Second, func() error {
		if st := c.Status(); st.Expired != 1 {
			return fmt.Errorf("%d sagas expired, want 1", st.Expired)
		}
		return nil
	})
	if s, err := cl.Status(ctx, stuck); err != nil || s.Status != client.StatusStuck {
		t.Fatalf("the stuck saga: %v, %v", s, err)
	}

	// The expired saga's start comes again, as a redelivery would, sent
	// longer ago than the retention: refused, the saga stays gone.
	rejected := c.Status().Rejected
	cmd, err := events.Encode(events.Event{ID: "start-again", Source: "/test", SagaID: done, Time: time.Now().Add(-10 * time.Second),
		Data: &events.StartSaga{SagaCreated: events.SagaCreated{Definition: saga.New("short").Then(saga.Action("a", "ret.ok")).MustBuild(), Params: json.RawMessage("null")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, streams.CommandSubject(streams.Partition(done, testPartitions)), cmd); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if st := c.Status(); st.Rejected <= rejected {
			return fmt.Errorf("the old start is not rejected yet (%d rejected)", st.Rejected)
		}
		return nil
	})
	if _, err := cl.Status(ctx, done); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("an old start re-created the expired saga: %v", err)
	}
}

// A coordinator not told the number of partitions adopts the deployed
// topology's.
func TestCoordinatorAdoptsDeployedPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // deploys testPartitions
	_, js := natstest.Connect(t, e.url)
	c, err := coordinator.New(js, coordinator.Config{Name: "c2", Logger: testLogger(t), Partitions: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatalf("start without partitions on a %d-partition deployment: %v", testPartitions, err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if n, err := streams.DeployedPartitions(ctxT(t), js); err != nil || n != testPartitions {
		t.Fatalf("deployed partitions %d, %v", n, err)
	}
}
