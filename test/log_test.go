package test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// logDriver decides like a coordinator and appends every decision to the
// saga's log on JetStream before acting on it.
type logDriver struct {
	t       *testing.T
	log     *streams.Log
	s       *machine.State
	seq     uint64
	now     time.Time
	pending map[string]machine.SendRequest
}

func (d *logDriver) apply(in machine.Input) {
	d.t.Helper()
	dec, err := machine.Decide(d.s, in, machine.Options{})
	if err != nil {
		d.t.Fatalf("decide %T: %v", in, err)
	}
	if len(dec.Events) > 0 {
		b, err := events.EncodeBatch(dec.Events)
		if err != nil {
			d.t.Fatal(err)
		}
		seq, err := d.log.Append(context.Background(), d.s.SagaID, d.seq, b)
		if err != nil {
			d.t.Fatalf("append: %v", err)
		}
		d.seq = seq
	}
	d.s = dec.State
	for _, c := range dec.Commands {
		if r, ok := c.(machine.SendRequest); ok {
			d.pending[r.Request.Node+"/"+string(r.Request.Op)] = r
		}
	}
}

func (d *logDriver) answer(node string, op events.Op, ok bool, kind events.ErrorKind) {
	d.t.Helper()
	r, found := d.pending[node+"/"+string(op)]
	if !found {
		d.t.Fatalf("no pending %s request for %s", op, node)
	}
	delete(d.pending, node+"/"+string(op))
	rep := events.ActionReply{RequestID: r.ID, Op: op, Node: node, Attempt: r.Request.Attempt, OK: ok}
	if ok {
		rep.Output = json.RawMessage(`{"node":"` + node + `"}`)
	} else {
		rep.Error = &events.Error{Kind: kind, Message: "injected"}
	}
	d.now = d.now.Add(time.Millisecond)
	d.apply(machine.Reply{Now: d.now, Reply: rep})
}

// readBack reads the saga's log from JetStream, decodes and folds it.
func readBack(t *testing.T, log *streams.Log, sagaID string) *machine.State {
	t.Helper()
	entries, err := log.Read(context.Background(), sagaID, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := machine.New(sagaID)
	for _, e := range entries {
		evs, err := events.DecodeLog(sagaID, e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyAll(evs); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func trip() *saga.Definition {
	return saga.New("trip").
		Then(saga.Action("flight", "flights.book").Undo("flights.cancel")).
		Parallel(
			saga.Action("hotel", "hotels.book").Undo("hotels.cancel"),
			saga.Action("car", "cars.book").Undo("cars.cancel"),
		).
		Then(saga.Action("pay", "payments.charge")).
		MustBuild()
}

func TestLogOnJetStreamFoldsToTheLiveState(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	runLogScenarios(t, js, streams.Config{})
}

func TestLogOnR3ClusterFoldsToTheLiveState(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	_, js := natstest.Connect(t, c.URL())
	runLogScenarios(t, js, streams.Config{Replicas: 3})
}

func runLogScenarios(t *testing.T, js jetstream.JetStream, cfg streams.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A cluster just formed can still refuse a placement now and then
	// ("no suitable peers for placement, peer offline"): try again.
	natstest.Eventually(t, 30*time.Second, func() error { return streams.Apply(ctx, js, cfg) })
	log := streams.NewLog(js)
	scenarios := map[string]struct {
		run  func(d *logDriver)
		want machine.Status
	}{
		"happy": {func(d *logDriver) {
			d.answer("flight", events.OpDo, true, "")
			d.answer("car", events.OpDo, true, "")
			d.answer("hotel", events.OpDo, true, "")
			d.answer("pay", events.OpDo, true, "")
		}, machine.StatusSucceeded},
		"unwound": {func(d *logDriver) {
			d.answer("flight", events.OpDo, true, "")
			d.answer("hotel", events.OpDo, true, "")
			d.answer("car", events.OpDo, false, events.ErrorPermanent)
			d.answer("hotel", events.OpUndo, true, "")
			d.answer("flight", events.OpUndo, true, "")
		}, machine.StatusUnwound},
		"stuck": {func(d *logDriver) {
			d.answer("flight", events.OpDo, true, "")
			d.answer("hotel", events.OpDo, true, "")
			d.answer("car", events.OpDo, true, "")
			d.answer("pay", events.OpDo, false, events.ErrorPermanent)
			d.answer("hotel", events.OpUndo, false, events.ErrorPermanent)
			d.answer("car", events.OpUndo, true, "")
		}, machine.StatusStuck},
	}
	for name, sc := range scenarios {
		t.Run(name, func(t *testing.T) {
			id := uuid.NewString()
			d := &logDriver{t: t, log: log, s: machine.New(id), now: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), pending: map[string]machine.SendRequest{}}
			d.apply(machine.Start{Now: d.now, Created: events.SagaCreated{Definition: trip(), Params: json.RawMessage(`{"traveller":"ada"}`)}})
			sc.run(d)
			if d.s.Status != sc.want {
				t.Fatalf("live status %s, want %s", d.s.Status, sc.want)
			}
			got := readBack(t, log, id)
			if !reflect.DeepEqual(got, d.s) {
				t.Fatalf("state folded from JetStream differs from the live state:\n got %+v\nlive %+v", got, d.s)
			}
		})
	}
}

func TestRacingWritersExactlyOneWins(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	log := streams.NewLog(js)
	id := uuid.NewString()
	now := time.Now().UTC()
	first, err := machine.Decide(machine.New(id), machine.Start{Now: now, Created: events.SagaCreated{Definition: trip(), Params: json.RawMessage(`{}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := events.EncodeBatch(first.Events)
	seq, err := log.Append(ctx, id, 0, b)
	if err != nil {
		t.Fatal(err)
	}
	// Two coordinators decide different things from the same state (one
	// sees the flight succeed, the other an abort) and race to append.
	flight := first.Commands[0].(machine.SendRequest)
	inputs := []machine.Input{
		machine.Reply{Now: now, Reply: events.ActionReply{RequestID: flight.ID, Op: events.OpDo, Node: "flight", Attempt: 1, OK: true, Output: json.RawMessage(`1`)}},
		machine.Abort{Now: now, Operator: "ops", Reason: "race"},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(inputs))
	for i, in := range inputs {
		dec, err := machine.Decide(first.State, in, machine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.EncodeBatch(dec.Events)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = log.Append(ctx, id, seq, b)
		}()
	}
	wg.Wait()
	wins, conflicts := 0, 0
	for _, err := range errs {
		var ce *streams.ConflictError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ce) && errors.Is(err, streams.ErrConflict):
			conflicts++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 || conflicts != 1 {
		t.Fatalf("%d wins, %d conflicts; want exactly one of each", wins, conflicts)
	}
	// The log holds the winner's decision only, and folds cleanly.
	if s := readBack(t, log, id); s.Events != len(first.Events)+2 && s.Events != len(first.Events)+3 {
		t.Fatalf("log has %d events", s.Events)
	}
}
