package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// A finished saga leaves its log subject after the dedupe window and is
// read from the archive until the retention has passed; a saga that has
// not finished (stuck here) is kept. A start delivered again, sent longer
// ago than the window, does not create the saga a second time.
func TestFinishedSagasLeaveTheLogForTheArchive(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	cnc, cjs := natstest.Connect(t, srv.ClientURL())
	const retention = 6 * time.Second
	cfg := coordinator.Config{Name: "c1", Topology: testTopo(), Logger: testLogger(t), Retention: retention, DedupeWindow: time.Second}
	c, err := coordinator.New(cjs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
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
	def := saga.New("short").Then(saga.Action("a", "ret.ok")).MustBuild()
	done, err := cl.Start(ctx, def, nil)
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
	log := streams.NewLog(js)
	listed := func() map[string]string {
		sums, err := cl.List(ctx, client.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, s := range sums {
			out[s.ID] = s.Status
		}
		return out
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if _, err := log.Read(ctx, done, 0); !errors.Is(err, streams.ErrNotFound) {
			return fmt.Errorf("the finished saga is still on its log subject (%v)", err)
		}
		return nil
	})
	// Gone from the log, still there for readers: from the archive.
	if s, err := cl.Status(ctx, done); err != nil || s.Status != client.StatusSucceeded || len(s.Timeline) == 0 {
		t.Fatalf("the archived saga: %+v, %v", s, err)
	}
	// The index says stuck once the coordinator has written the summary,
	// just after the log says so: poll.
	natstest.Eventually(t, 10*time.Second, func() error {
		if l := listed(); l[done] != "succeeded" || l[stuck] != "stuck" {
			return fmt.Errorf("list: %v", l)
		}
		return nil
	})

	// The saga's start comes again, delivered a second time (a
	// coordinator took it and died before acking), sent longer ago than
	// the window: refused, the saga is not created again.
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	cnc.Close()
	p := streams.Partition(done, testPartitions)
	cmd, err := events.Encode(events.Event{ID: "start-again", Source: "/test", SagaID: done, Time: time.Now().Add(-10 * time.Second),
		Data: &events.StartSaga{SagaCreated: events.SagaCreated{Definition: def, Params: json.RawMessage("null")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, streams.CommandSubject(p), cmd); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, streams.WorkStream, streams.PartitionConsumer(p).Durable)
	if err != nil {
		t.Fatal(err)
	}
	for delivered := false; !delivered; {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if string(m.Data()) == string(cmd) {
				delivered = true
				_ = m.Nak()
			} else {
				_ = m.Ack() // an earlier message left behind
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("fetching the start: %v", err)
		}
	}
	_, cjs2 := natstest.Connect(t, srv.ClientURL())
	cfg.Name = "c2"
	c2, err := coordinator.New(cjs2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	natstest.Eventually(t, 20*time.Second, func() error {
		if st := c2.Status(); st.Rejected < 1 {
			return fmt.Errorf("the old start is not rejected yet (%d rejected)", st.Rejected)
		}
		return nil
	})
	if _, err := log.Read(ctx, done, 0); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("an old start re-created the finished saga: %v", err)
	}

	// Past the retention, the archive lets it go.
	natstest.Eventually(t, 30*time.Second, func() error {
		if _, err := cl.Status(ctx, done); !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("the finished saga is still readable after the retention (%v)", err)
		}
		if l := listed(); l[done] != "" || l[stuck] != "stuck" {
			return fmt.Errorf("list: %v", l)
		}
		return nil
	})
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

// A marker that outlived its saga's log (its removal failed, and no
// recovery pass came before the dedupe window ended) is cleared once the
// archive is seen to hold the saga; a marker whose saga is in neither
// the log nor the archive (a start on its way) is left alone.
func TestRecoveryClearsMarkersOfArchivedSagas(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coordinator.Config{DedupeWindow: time.Second, RecoveryInterval: 300 * time.Millisecond})
	js, c, cl := e.js, e.coord, e.cl
	startRaw(t, js, succeedAll)
	ctx := ctxT(t)
	done, err := cl.Start(ctx, saga.New("short").Then(saga.Action("a", "mark.ok")).MustBuild(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.wait(done); s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}
	log := streams.NewLog(js)
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, err := log.Read(ctx, done, 0); !errors.Is(err, streams.ErrNotFound) {
			return fmt.Errorf("still on the log: %v", err)
		}
		return nil
	})
	ix, err := index.Open(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	p := streams.Partition(done, testPartitions)
	unknown := uuid.Must(uuid.NewV7()).String()
	st, err := cl.Status(ctx, done) // from the archive
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{done, unknown} {
		// As the marker of the saga's start was (its creation time tells
		// it from another saga of the same id).
		if err := ix.MarkInFlight(ctx, index.Summary{ID: id, Partition: streams.Partition(id, testPartitions), Status: "running", Created: st.Created}); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, err := ix.Get(ctx, p, done); !errors.Is(err, index.ErrNotFound) {
			return fmt.Errorf("the archived saga's marker is still there (%v)", err)
		}
		return nil
	})
	// A marker of another saga of the same id (its id reused after the
	// window, its first append not landed yet) is not the archived one's.
	if err := ix.MarkInFlight(ctx, index.Summary{ID: done, Partition: p, Status: "running", Created: st.Created.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// The other markers' partitions are passed over since, and they stay.
	marked := time.Now()
	natstest.Eventually(t, 20*time.Second, func() error {
		if st := c.Status(); !st.LastRecovery.After(marked.Add(time.Second)) {
			return fmt.Errorf("no recovery pass since the markers were written (last %s)", st.LastRecovery)
		}
		return nil
	})
	if _, err := ix.Get(ctx, streams.Partition(unknown, testPartitions), unknown); err != nil {
		t.Fatalf("the marker of a saga in neither the log nor the archive went: %v", err)
	}
	if _, err := ix.Get(ctx, p, done); err != nil {
		t.Fatalf("the marker of another saga of the archived one's id went: %v", err)
	}
}

// A saga whose whole log is larger than a message may be finishes all the
// same: its last decision is appended as any other, and it stays on its
// log, readable, unarchived, its marker gone.
func TestASagaTooBigForARollupFinishesOnItsLog(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, coordinator.Config{DedupeWindow: time.Second})
	js, cl := e.js, e.cl
	big := strings.Repeat("x", 300<<10)
	startRaw(t, js, func(req events.ActionRequest) (any, *events.Error, bool) {
		return map[string]string{"pad": big}, nil, true
	})
	ctx := ctxT(t)
	def := saga.New("big").Then(saga.Action("a", "big.a")).Then(saga.Action("b", "big.b")).Then(saga.Action("c", "big.c")).Then(saga.Action("d", "big.d")).MustBuild()
	id, err := cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.wait(id); s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}
	ix, err := index.Open(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, err := ix.Get(ctx, streams.Partition(id, testPartitions), id); !errors.Is(err, index.ErrNotFound) {
			return fmt.Errorf("still marked in flight (%v)", err)
		}
		return nil
	})
	entries, err := streams.NewLog(js).Read(ctx, id, 0)
	if err != nil || len(entries) < 2 {
		t.Fatalf("the log: %d messages, %v", len(entries), err)
	}
	for _, e := range entries {
		if events.IsRollup(e.Data) {
			t.Fatal("a rollup was appended")
		}
	}
	if s, err := cl.Status(ctx, id); err != nil || s.Status != client.StatusSucceeded {
		t.Fatalf("read back: %v", err)
	}
}
