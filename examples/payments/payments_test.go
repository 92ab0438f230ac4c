package payments_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/examples/payments"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// setup runs the example on its own embedded server, stopped at cleanup.
func setup(t *testing.T) (context.Context, *demo.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	env, err := demo.Start(ctx, demo.Options{Dir: t.TempDir()}, payments.Register)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return ctx, env
}

// kinds counts a saga's ledger entries by kind.
func kinds(ctx context.Context, t *testing.T, env *demo.Env, sagaID string) map[string]int {
	t.Helper()
	entries, err := payments.Entries(ctx, env.JS, sagaID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range entries {
		out[e.Kind]++
	}
	return out
}

func TestPaymentsDemo(t *testing.T) {
	t.Parallel()
	ctx, env := setup(t)
	var out bytes.Buffer
	sagas, err := payments.Demo(ctx, env.Client, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(sagas) != 2 || sagas[0].Status != client.StatusSucceeded || sagas[1].Status != client.StatusUnwound {
		t.Fatalf("outcomes: %s", out.String())
	}
	for _, want := range []string{"stuck: ship failed (no courier delivers to nowhere)", `operator: resolve charge: "refunded by hand at the bank"`} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}

	// The slow bank: the first attempt timed out and a second one was
	// sent, yet the card was charged once, by the first.
	slow := sagas[0]
	ch, _ := slow.Node("charge")
	if ch.State != "succeeded" || ch.Attempt != 2 {
		t.Errorf("charge is %s after %d attempts, want succeeded after 2", ch.State, ch.Attempt)
	}
	entries, err := payments.Entries(ctx, env.JS, slow.ID)
	if err != nil {
		t.Fatal(err)
	}
	var charges []payments.Entry
	for _, e := range entries {
		if e.Kind == "charge" {
			charges = append(charges, e)
		}
	}
	if len(charges) != 1 || charges[0].Amount != 42 || charges[0].Attempt != 1 {
		t.Errorf("charges %+v, want one of 42 by attempt 1", charges)
	}
	if got := kinds(ctx, t, env, slow.ID); got["reservation"] != 1 || got["shipment"] != 1 {
		t.Errorf("ledger %v", got)
	}

	// Stuck, then resolved: the operator's reason is recorded, the refund
	// never ran (the charge is still on the bank's ledger: it was refunded
	// by hand), and the stock was released.
	resolved := sagas[1]
	ch, _ = resolved.Node("charge")
	if ch.State != "undo_finished" || ch.Resolved != payments.Resolution || ch.UndoAttempt != payments.RefundAttempts {
		t.Errorf("charge: %s, resolved %q after %d undo attempts", ch.State, ch.Resolved, ch.UndoAttempt)
	}
	if res, _ := resolved.Node("reserve"); res.State != "undo_finished" || res.Resolved != "" {
		t.Errorf("reserve: %s, resolved %q", res.State, res.Resolved)
	}
	if got := kinds(ctx, t, env, resolved.ID); got["reservation"] != 0 || got["charge"] != 1 || got["shipment"] != 0 {
		t.Errorf("ledger %v, want the charge only", got)
	}
}

// The other way out of stuck: retry the refund once the bank is back.
func TestPaymentsRetryUndo(t *testing.T) {
	t.Parallel()
	ctx, env := setup(t)
	cl := env.Client
	id, err := cl.Start(ctx, payments.Definition(), payments.Params{Order: "o-3", Amount: 5, ShipTo: payments.Nowhere, RefundOffline: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cl.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != client.StatusStuck || payments.StuckNode(s) != "charge" {
		t.Fatalf("status %s, stuck at %q; want stuck at charge", s.Status, payments.StuckNode(s))
	}
	if got := kinds(ctx, t, env, id); got["charge"] != 1 || got["reservation"] != 1 {
		t.Fatalf("while stuck, the ledger has %v", got)
	}
	if err := cl.RetryUndo(ctx, id, "charge", "the bank is back"); err != nil {
		t.Fatal(err)
	}
	s, err = cl.WaitFor(ctx, id, func(s *client.Saga) bool { return s.Finished() })
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := s.Node("charge")
	if s.Status != client.StatusUnwound || ch.State != "undo_finished" || ch.Resolved != "" || ch.UndoAttempt <= payments.RefundAttempts {
		t.Fatalf("status %s; charge %s after %d undo attempts, resolved %q", s.Status, ch.State, ch.UndoAttempt, ch.Resolved)
	}
	// The refund ran: nothing is left.
	if left, err := payments.Entries(ctx, env.JS, id); err != nil || len(left) != 0 {
		t.Fatalf("left %v (%v)", left, err)
	}
}
