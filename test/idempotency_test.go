package test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// An idempotency key means one request (issue 11, §4): the same key with
// the same definition and params returns the saga it started; with other
// params or another definition it is an error that says so.

func keyDefs() (*saga.Definition, *saga.Definition) {
	a := saga.New("order").Then(saga.Action("charge", "pay.charge").Undo("pay.refund")).MustBuild()
	b := saga.New("order").Then(saga.Action("charge", "pay.charge")).MustBuild()
	return a, b
}

func requireConflict(t *testing.T, err error, key, differs string) {
	t.Helper()
	var ce *client.IdempotencyConflictError
	if !errors.Is(err, client.ErrIdempotencyConflict) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want an idempotency conflict", err)
	}
	if ce.Key != key || strings.Join(ce.Differs, " and ") != differs || !strings.Contains(err.Error(), differs) {
		t.Fatalf("conflict %+v (%v), want key %q, differs %q", ce, err, key, differs)
	}
}

func TestIdempotencyKeyMeansTheSameRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, succeedAll)
	ctx := ctxT(t)
	def, other := keyDefs()
	id, err := e.cl.Start(ctx, def, map[string]any{"order": "o-1", "amount": 17}, client.WithIdempotencyKey("o-1"))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.wait(id); s.Status != client.StatusSucceeded {
		t.Fatal(s.Status)
	}
	// The same request, its params written in another order: the same saga.
	type params struct {
		Amount int    `json:"amount"`
		Order  string `json:"order"`
	}
	again, err := e.cl.Start(ctx, def, params{Amount: 17, Order: "o-1"}, client.WithIdempotencyKey("o-1"), client.WithMetadata(map[string]string{"retry": "yes"}))
	if err != nil || again != id {
		t.Fatalf("same request: %s, %v; want %s", again, err, id)
	}
	_, err = e.cl.Start(ctx, def, params{Amount: 18, Order: "o-1"}, client.WithIdempotencyKey("o-1"))
	requireConflict(t, err, "o-1", "params")
	_, err = e.cl.Start(ctx, other, params{Amount: 18, Order: "o-1"}, client.WithIdempotencyKey("o-1"))
	requireConflict(t, err, "o-1", "definition and params")
	_, err = e.cl.Start(ctx, other, nil, client.WithSagaID(id))
	requireConflict(t, err, "", "definition and params")
	// Nothing of the saga changed.
	evs, err := e.cl.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.wait(id); s.Status != client.StatusSucceeded || string(s.Params) != `{"amount":17,"order":"o-1"}` || len(s.Timeline) != len(evs) {
		t.Fatalf("saga after the conflicts: %s %s", s.Status, s.Params)
	}
}

// Before a coordinator has created the saga, a second start of the same
// key is deduplicated by the stream; the client compares it with the first
// start command.
func TestIdempotencyConflictBeforeTheSagaIsCreated(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := ctxT(t)
	if err := streams.Apply(ctx, js, testTopo()); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	def, other := keyDefs()
	id, err := cl.Start(ctx, def, map[string]int{"amount": 17}, client.WithIdempotencyKey("o-2"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := cl.Start(ctx, def, map[string]int{"amount": 17}, client.WithIdempotencyKey("o-2")); err != nil || again != id {
		t.Fatalf("same request: %s, %v", again, err)
	}
	_, err = cl.Start(ctx, def, map[string]int{"amount": 18}, client.WithIdempotencyKey("o-2"))
	requireConflict(t, err, "o-2", "params")
	_, err = cl.Start(ctx, other, map[string]int{"amount": 17}, client.WithIdempotencyKey("o-2"))
	requireConflict(t, err, "o-2", "definition")

	// The first start is the one that runs.
	startCoordinator(t, srv.ClientURL(), "c1", testTopo(), testLogger(t))
	startRaw(t, js, succeedAll)
	s, err := cl.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != client.StatusSucceeded || string(s.Params) != `{"amount":17}` {
		t.Fatalf("saga %s with params %s", s.Status, s.Params)
	}
}
