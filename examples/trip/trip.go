// Package trip is the trip-booking example: book a flight, then a hotel,
// then a car. When the car cannot be booked, the hotel and the flight are
// cancelled, in that order. Bookings are kept in a KV bucket (the ledger),
// standing in for the airline's, hotel's and rental company's systems.
package trip

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/examples/internal/ledger"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// Bucket holds the bookings.
const Bucket = "example_trip_bookings"

// Params are a trip's params.
type Params struct {
	Traveller   string `json:"traveller"`
	Destination string `json:"destination"`
	// HotelBusy: the hotel's system is busy for the first this many
	// attempts of the booking (a transient error, retried).
	HotelBusy int `json:"hotel_busy,omitempty"`
}

// NoCars is a destination without rental cars: booking one fails for good.
const NoCars = "Atlantis"

// Definition is the trip saga: flight → hotel → car.
func Definition() *saga.Definition {
	return saga.New("trip.book").
		Then(saga.Action("flight", "flights.book").Undo("flights.cancel")).
		Then(saga.Action("hotel", "hotels.book").Undo("hotels.cancel")).
		Then(saga.Action("car", "cars.book").Undo("cars.cancel").Reads("flight")).
		MustBuild()
}

// Booking is what each service records.
type Booking struct {
	Kind      string `json:"kind"`
	Ref       string `json:"ref"`
	Traveller string `json:"traveller"`
	Where     string `json:"where"`
}

// Register adds the flight, hotel and car participants to p.
func Register(ctx context.Context, js jetstream.JetStream, p *participant.Participant) error {
	l, err := ledger.Open(ctx, js, Bucket)
	if err != nil {
		return err
	}
	book := func(kind string) participant.Handler {
		return func(ctx context.Context, req *participant.Request) (any, error) {
			var tp Params
			if err := req.DecodeParams(&tp); err != nil {
				return nil, err
			}
			if kind == "hotel" && req.Attempt <= tp.HotelBusy {
				return nil, participant.RetryAfter(200*time.Millisecond, fmt.Errorf("hotel system busy (attempt %d; busy for %d)", req.Attempt, tp.HotelBusy))
			}
			if kind == "car" {
				var flight Booking
				if err := participant.Lookup(ctx, "flight", &flight); err != nil {
					return nil, err
				}
				if tp.Destination == NoCars {
					return nil, participant.Permanent(fmt.Errorf("no rental cars in %s", tp.Destination))
				}
			}
			b := Booking{Kind: kind, Ref: fmt.Sprintf("%s-%.8s", kind, req.SagaID), Traveller: tp.Traveller, Where: tp.Destination}
			// Add is idempotent on the request's key: a repeat books nothing new.
			return l.Add(ctx, req.IdempotencyKey, b)
		}
	}
	cancel := func(ctx context.Context, req *participant.Request) (any, error) {
		return nil, l.Remove(ctx, req.IdempotencyKey)
	}
	return errors.Join(
		p.Register("flights.book", book("flight"), cancel),
		p.Register("hotels.book", book("hotel"), cancel),
		p.Register("cars.book", book("car"), cancel),
	)
}

// Bookings lists what a saga left booked.
func Bookings(ctx context.Context, js jetstream.JetStream, sagaID string) (map[string]Booking, error) {
	return ledger.Read[Booking](ctx, js, Bucket, sagaID)
}
