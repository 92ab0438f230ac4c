package trip_test

import (
	"context"
	"testing"

	"github.com/jetsaga/jetsaga/examples/internal/ledger"
	"github.com/jetsaga/jetsaga/examples/trip"
	"github.com/jetsaga/jetsaga/sagatest"
)

// The trip's nodes pass every sagatest check.
func TestTripNodesPassEveryCheck(t *testing.T) {
	k := sagatest.New(t)
	if err := trip.Register(context.Background(), k.JetStream(), k.Participant()); err != nil {
		t.Fatal(err)
	}
	capture := func(reset bool) func(testing.TB) any {
		return func(t testing.TB) any {
			s, err := ledger.State(context.Background(), k.JetStream(), trip.Bucket, reset,
				func(b trip.Booking) string { return b.Kind + " for " + b.Traveller + " in " + b.Where })
			if err != nil {
				t.Fatalf("bookings: %v", err)
			}
			return s
		}
	}
	hooks := sagatest.Hooks{Before: capture(true), After: capture(false)}
	params := func() any { return trip.Params{Traveller: "Ada", Destination: "Lisbon"} }
	def := trip.Definition()
	k.ActionsSucceedIdempotently(def, params, hooks)
	k.ActionFailureCanUnwind(def, params, hooks)
	k.ActionFailureCanUnwindIdempotently(def, params, hooks)
	k.CrashAtEveryEvent(def, params, hooks)
	k.NoStuckUndos()
}
