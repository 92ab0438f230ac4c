package participant_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/streams"
)

// A participant for payments.charge, with its undo. The example plays the
// coordinator too: it sends the action, a repeat of it, and the undo, and
// prints the replies.
func ExampleParticipant_Register() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "jetsaga-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Port: -1})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		panic(err)
	}

	p, err := participant.New(js, participant.Config{Name: "payments"})
	if err != nil {
		panic(err)
	}
	var charges atomic.Int32
	err = p.Register("payments.charge",
		func(ctx context.Context, req *participant.Request) (any, error) {
			var order struct{ Amount int }
			if err := req.DecodeParams(&order); err != nil {
				return nil, err
			}
			var cart struct{ Items int }
			if err := participant.Lookup(ctx, "cart", &cart); err != nil {
				return nil, err
			}
			charges.Add(1) // a real charge would pass req.IdempotencyKey to the bank
			return map[string]any{"charged": order.Amount, "items": cart.Items}, nil
		},
		func(ctx context.Context, req *participant.Request) (any, error) {
			var charged struct{ Charged int }
			if err := req.DecodeOutput(&charged); err != nil {
				return nil, err
			}
			fmt.Println("refund", charged.Charged)
			return nil, nil
		})
	if err != nil {
		panic(err)
	}
	if err := p.Start(ctx); err != nil {
		panic(err)
	}
	defer p.Stop(ctx)

	// The coordinator's side: requests on jetsaga.req.payments.charge,
	// replies on a reply subject of the WORK stream.
	replies, _ := nc.SubscribeSync(streams.ReplySubject(0))
	sagaID := "0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e"
	send := func(op events.Op, attempt int, output string) {
		id := events.RequestID(sagaID, "charge", op, attempt)
		b, _ := events.Encode(events.Event{ID: id, Source: events.SourceCoordinator, SagaID: sagaID,
			Data: &events.ActionRequest{Op: op, Node: "charge", Action: "payments.charge", Undo: "payments.charge",
				Attempt: attempt, IdempotencyKey: sagaID + ":charge", Params: json.RawMessage(`{"amount":42}`),
				Outputs: map[string]json.RawMessage{"cart": json.RawMessage(`{"items":3}`)},
				Output:  json.RawMessage(output), ReplyTo: streams.ReplySubject(0)}})
		if _, err := js.Publish(ctx, streams.RequestSubject("payments.charge"), b, jetstream.WithMsgID(id)); err != nil {
			panic(err)
		}
		msg, err := replies.NextMsg(10 * time.Second)
		if err != nil {
			panic(err)
		}
		ev, _ := events.Decode(msg.Data)
		r := ev.Data.(*events.ActionReply)
		fmt.Printf("%s %d: ok=%v output=%s\n", r.Op, r.Attempt, r.OK, r.Output)
	}
	send(events.OpDo, 1, "")
	send(events.OpDo, 2, "") // a retry after a timeout: the barrier answers
	send(events.OpUndo, 1, `{"charged":42,"items":3}`)
	fmt.Println("charges:", charges.Load())
	// Output:
	// do 1: ok=true output={"charged":42,"items":3}
	// do 2: ok=true output={"charged":42,"items":3}
	// refund 42
	// undo 1: ok=true output=
	// charges: 1
}
