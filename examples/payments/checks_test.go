package payments_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jetsaga/jetsaga/examples/internal/ledger"
	"github.com/jetsaga/jetsaga/examples/payments"
	"github.com/jetsaga/jetsaga/sagatest"
)

// The order saga's nodes pass every sagatest check.
func TestOrderNodesPassEveryCheck(t *testing.T) {
	k := sagatest.New(t)
	if err := payments.Register(context.Background(), k.JetStream(), k.Participant()); err != nil {
		t.Fatal(err)
	}
	capture := func(reset bool) func(testing.TB) any {
		return func(t testing.TB) any {
			s, err := ledger.State(context.Background(), k.JetStream(), payments.Bucket, reset,
				func(e payments.Entry) string { return fmt.Sprintf("%s of %s: %d %s", e.Kind, e.Order, e.Amount, e.To) })
			if err != nil {
				t.Fatalf("ledger: %v", err)
			}
			return s
		}
	}
	hooks := sagatest.Hooks{Before: capture(true), After: capture(false)}
	params := func() any { return payments.Params{Order: "o-17", Amount: 42, ShipTo: "Lisbon"} }
	def := payments.Definition()
	k.ActionsSucceedIdempotently(def, params, hooks)
	k.ActionFailureCanUnwind(def, params, hooks)
	k.ActionFailureCanUnwindIdempotently(def, params, hooks)
	k.CrashAtEveryEvent(def, params, hooks)
	k.NoStuckUndos()
}
