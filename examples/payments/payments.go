// Package payments is the order example: reserve stock, charge the card,
// ship. It shows three things jetsaga does when a bank misbehaves:
//
//   - An attempt that times out has an unknown outcome: the charge may be
//     on its way. The coordinator tries again with the same idempotency
//     key, and the participant's idempotency barrier holds the new attempt
//     while the first still runs, then answers it with the first one's
//     output: the card is charged once.
//   - An undo that keeps failing (the bank is offline, so the refund cannot
//     be made) leaves the saga stuck: durable, visible, waiting for an
//     operator.
//   - An operator unsticks it, either by resolving the undo (it was done by
//     hand, the reason is recorded) or by retrying it once the bank is back.
//
// Reservations, charges and shipments are kept in a KV bucket (the
// ledger), standing in for the warehouse, the bank and the courier.
package payments

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

// Bucket holds the ledger.
const Bucket = "example_payments_ledger"

// Params are an order's params.
type Params struct {
	Order  string `json:"order"`
	Amount int    `json:"amount"`
	// ShipTo is where the order goes; Nowhere fails shipping for good.
	ShipTo string `json:"ship_to,omitempty"`
	// SlowBank: the bank answers the first charge attempt only after
	// SlowBankDelay, longer than ChargeTimeout.
	SlowBank bool `json:"slow_bank,omitempty"`
	// RefundOffline: the bank is offline during the first round of refund
	// attempts (RefundAttempts), so the refund fails and the saga gets
	// stuck; it is back by the time an operator retries.
	RefundOffline bool `json:"refund_offline,omitempty"`
}

// Nowhere is a destination no courier delivers to.
const Nowhere = "nowhere"

const (
	// ChargeTimeout bounds each attempt of charge (and of its refund).
	ChargeTimeout = time.Second
	// SlowBankDelay is how long a slow bank takes to answer: past the
	// first attempt's timeout (1s) and the wait before the second attempt
	// (the coordinator's retries are JetStream message schedules, at least
	// a second out), but within the second attempt's timeout.
	SlowBankDelay = 2500 * time.Millisecond
	// RefundAttempts is how often a refund is tried before the saga is
	// stuck (and again after each operator retry).
	RefundAttempts = 3
)

// Definition is the order saga: reserve → charge → ship.
func Definition() *saga.Definition {
	short := saga.Duration(200 * time.Millisecond)
	return saga.New("order.place").
		Then(saga.Action("reserve", "stock.reserve").Undo("stock.release")).
		Then(saga.Action("charge", "payments.charge").Undo("payments.refund").Reads("reserve").
			Timeout(ChargeTimeout).
			Retry(saga.RetryPolicy{MaxAttempts: 3, InitialDelay: short}).
			UndoRetry(saga.RetryPolicy{MaxAttempts: RefundAttempts, InitialDelay: short})).
		Then(saga.Action("ship", "courier.ship").Reads("reserve")).
		MustBuild()
}

// Entry is what the warehouse, the bank and the courier record.
type Entry struct {
	// Kind is "reservation", "charge" or "shipment".
	Kind  string `json:"kind"`
	Ref   string `json:"ref"`
	Order string `json:"order"`
	// Amount, for a charge.
	Amount int `json:"amount,omitempty"`
	// Attempt, for a charge, is the attempt of the node that made it.
	Attempt int `json:"attempt,omitempty"`
	// To, for a shipment.
	To string `json:"to,omitempty"`
}

// Register adds the stock, payments and courier participants to p.
func Register(ctx context.Context, js jetstream.JetStream, p *participant.Participant) error {
	l, err := ledger.Open(ctx, js, Bucket)
	if err != nil {
		return err
	}
	// Add is idempotent on the request's key: a repeat records nothing new.
	reserve := func(ctx context.Context, req *participant.Request) (any, error) {
		var o Params
		if err := req.DecodeParams(&o); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, Entry{Kind: "reservation", Ref: ref("res", req.SagaID), Order: o.Order})
	}
	charge := func(ctx context.Context, req *participant.Request) (any, error) {
		var o Params
		if err := req.DecodeParams(&o); err != nil {
			return nil, err
		}
		var res Entry
		if err := req.Lookup("reserve", &res); err != nil {
			return nil, err
		}
		if o.SlowBank && req.Attempt == 1 {
			if err := slowBank(ctx, SlowBankDelay); err != nil {
				return nil, err
			}
			// The bank has charged; record it even though the coordinator
			// stopped waiting for this attempt.
			ctx = context.WithoutCancel(ctx)
		}
		return l.Add(ctx, req.IdempotencyKey, Entry{Kind: "charge", Ref: ref("ch", req.SagaID), Order: o.Order, Amount: o.Amount, Attempt: req.Attempt})
	}
	refund := func(ctx context.Context, req *participant.Request) (any, error) {
		var o Params
		if err := req.DecodeParams(&o); err != nil {
			return nil, err
		}
		if o.RefundOffline && req.Attempt <= RefundAttempts {
			return nil, fmt.Errorf("bank offline: cannot refund %d for order %s", o.Amount, o.Order) // transient
		}
		return nil, l.Remove(ctx, req.IdempotencyKey)
	}
	ship := func(ctx context.Context, req *participant.Request) (any, error) {
		var o Params
		if err := req.DecodeParams(&o); err != nil {
			return nil, err
		}
		var res Entry
		if err := req.Lookup("reserve", &res); err != nil {
			return nil, err
		}
		if o.ShipTo == Nowhere {
			return nil, participant.Permanent(fmt.Errorf("no courier delivers to %s", o.ShipTo))
		}
		return l.Add(ctx, req.IdempotencyKey, Entry{Kind: "shipment", Ref: ref("shp", req.SagaID), Order: o.Order, To: o.ShipTo})
	}
	release := func(ctx context.Context, req *participant.Request) (any, error) {
		return nil, l.Remove(ctx, req.IdempotencyKey)
	}
	return errors.Join(
		p.Register("stock.reserve", reserve, release),
		p.Register("payments.charge", charge, refund),
		p.Register("courier.ship", ship, nil),
	)
}

// slowBank waits d for the bank to answer. The coordinator stops waiting
// at the request's deadline, but a charge on its way goes through, so the
// wait goes on past the deadline. It ends early only if the participant
// stops (or loses the barrier lock), before anything was charged.
func slowBank(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
	}
	if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	<-t.C
	return nil
}

func ref(prefix, sagaID string) string { return fmt.Sprintf("%s-%.8s", prefix, sagaID) }

// Entries lists what a saga left in the ledger, by key.
func Entries(ctx context.Context, js jetstream.JetStream, sagaID string) (map[string]Entry, error) {
	return ledger.Read[Entry](ctx, js, Bucket, sagaID)
}
