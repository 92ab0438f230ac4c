package participant_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/barrier"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/streams"
)

func ok(output any) participant.Handler {
	return func(context.Context, *participant.Request) (any, error) { return output, nil }
}

func wantOK(t *testing.T, rep *events.ActionReply, output string) {
	t.Helper()
	if !rep.OK || rep.Error != nil {
		t.Fatalf("reply to %s: ok %v, error %v; want ok", rep.RequestID, rep.OK, rep.Error)
	}
	if output != "" && string(rep.Output) != output {
		t.Fatalf("reply to %s: output %s, want %s", rep.RequestID, rep.Output, output)
	}
}

func wantError(t *testing.T, rep *events.ActionReply, kind events.ErrorKind, msgParts ...string) {
	t.Helper()
	if rep.OK || rep.Error == nil {
		t.Fatalf("reply to %s: ok %v, error %v; want a %s error", rep.RequestID, rep.OK, rep.Error, kind)
	}
	if rep.Error.Kind != kind {
		t.Fatalf("reply to %s: error %v, want kind %s", rep.RequestID, rep.Error, kind)
	}
	for _, s := range msgParts {
		if !strings.Contains(rep.Error.Message, s) {
			t.Fatalf("reply to %s: error message %q does not contain %q", rep.RequestID, rep.Error.Message, s)
		}
	}
}

func TestDoAndUndo(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "payments.charge"
	seen := make(chan *participant.Request, 2)
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action,
			func(ctx context.Context, r *participant.Request) (any, error) {
				if got, _ := participant.FromContext(ctx); got != r {
					return nil, errors.New("the context does not carry the request")
				}
				var params struct{ Amount int }
				if err := r.DecodeParams(&params); err != nil {
					return nil, err
				}
				seen <- r
				return map[string]string{"charge": fmt.Sprintf("ch-%d", params.Amount)}, nil
			},
			func(ctx context.Context, r *participant.Request) (any, error) {
				seen <- r
				return "ignored", nil
			})
	})

	saga := uuid.NewString()
	deadline := time.Now().Add(time.Minute).UTC()
	id := e.send(action, req{saga: saga, node: "pay/charge", params: `{"amount":5}`, deadline: deadline})
	rep := e.replies.get(id)
	wantOK(t, rep, `{"charge":"ch-5"}`)
	if rep.Op != events.OpDo || rep.Node != "pay/charge" || rep.Attempt != 1 {
		t.Fatalf("reply %+v does not match the request", rep)
	}
	r := <-seen
	if r.ID != id || r.SagaID != saga || r.Node != "pay/charge" || r.Op != events.OpDo || r.Attempt != 1 ||
		r.Action != action || r.IdempotencyKey != saga+":pay/charge" || !r.Deadline.Equal(deadline) {
		t.Fatalf("do handler got %+v", r)
	}

	uid := e.send(action, req{saga: saga, node: "pay/charge", op: events.OpUndo, output: string(rep.Output)})
	urep := e.replies.get(uid)
	wantOK(t, urep, "")
	if urep.Op != events.OpUndo || len(urep.Output) != 0 {
		t.Fatalf("undo reply %+v", urep)
	}
	r = <-seen
	var out struct{ Charge string }
	if err := r.DecodeOutput(&out); err != nil || out.Charge != "ch-5" || r.Op != events.OpUndo {
		t.Fatalf("undo handler got op %s output %s (%v)", r.Op, r.Output, err)
	}
	e.settled(action)
}

func TestLookup(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "hotels.book"
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, r *participant.Request) (any, error) {
			var flight struct{ Seat string }
			if err := participant.Lookup(ctx, "flight", &flight); err != nil {
				return nil, err
			}
			return map[string]string{"near_seat": flight.Seat}, nil
		}, nil)
	})

	id := e.send(action, req{node: "hotel", outputs: map[string]string{"flight": `{"seat":"12A"}`, "fees": `1`}})
	wantOK(t, e.replies.get(id), `{"near_seat":"12A"}`)

	// A node the request has no output for: a permanent error naming it
	// and what is available.
	id = e.send(action, req{node: "hotel", outputs: map[string]string{"fees": `1`, "car": `2`}})
	wantError(t, e.replies.get(id), events.ErrorPermanent, `"flight"`, `"car", "fees"`, `"hotel"`)
}

func TestRequestLookup(t *testing.T) {
	t.Parallel()
	r := &participant.Request{Node: "hotel", Outputs: map[string]json.RawMessage{"fees": json.RawMessage(`{"eur":3}`), "car": json.RawMessage(`null`)}}
	var fees struct{ EUR int }
	if err := r.Lookup("fees", &fees); err != nil || fees.EUR != 3 {
		t.Fatalf("Lookup(fees) = %v, %+v", err, fees)
	}
	err := r.Lookup("flight", &fees)
	var une *participant.UnknownNodeError
	if !errors.Is(err, participant.ErrUnknownNode) || !errors.As(err, &une) {
		t.Fatalf("Lookup(flight) = %v, want an *UnknownNodeError", err)
	}
	if une.Node != "flight" || une.RequestNode != "hotel" || strings.Join(une.Available, ",") != "car,fees" {
		t.Fatalf("UnknownNodeError %+v", une)
	}
	var n int
	if err := r.Lookup("fees", &n); !errors.Is(err, participant.ErrDecode) || !strings.Contains(err.Error(), `"fees"`) {
		t.Fatalf("Lookup(fees) into int = %v, want ErrDecode naming the node", err)
	}
	if err := (&participant.Request{Params: json.RawMessage(`"x"`)}).DecodeParams(&fees); !errors.Is(err, participant.ErrDecode) {
		t.Fatalf("DecodeParams = %v, want ErrDecode", err)
	}
	if err := participant.Lookup(context.Background(), "fees", &fees); !errors.Is(err, participant.ErrNoRequest) {
		t.Fatalf("Lookup outside a handler = %v, want ErrNoRequest", err)
	}
	if err := participant.InProgress(context.Background()); !errors.Is(err, participant.ErrNoRequest) {
		t.Fatalf("InProgress outside a handler = %v, want ErrNoRequest", err)
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	e := setup(t)
	fail := func(err error) participant.Handler {
		return func(context.Context, *participant.Request) (any, error) { return nil, err }
	}
	tests := []struct {
		action     string
		handler    participant.Handler
		kind       events.ErrorKind
		message    string
		retryAfter time.Duration
	}{
		{"e.permanent", fail(fmt.Errorf("charge: %w", participant.Permanent(errors.New("card declined")))), events.ErrorPermanent, "charge: card declined", 0},
		{"e.retry_after", fail(participant.RetryAfter(5*time.Second, errors.New("rate limited"))), events.ErrorTransient, "rate limited", 5 * time.Second},
		{"e.plain", fail(errors.New("connection refused")), events.ErrorTransient, "connection refused", 0},
		{"e.panic", func(context.Context, *participant.Request) (any, error) { panic("boom") }, events.ErrorTransient, "handler panicked: boom", 0},
		{"e.params", func(_ context.Context, r *participant.Request) (any, error) {
			var v struct{ N int }
			return nil, r.DecodeParams(&v)
		}, events.ErrorPermanent, "cannot decode params", 0},
		{"e.output", ok(func() {}), events.ErrorPermanent, "not JSON-encodable", 0},
	}
	e.start(participant.Config{}, func(p *participant.Participant) {
		for _, tt := range tests {
			mustRegister(t, p, tt.action, tt.handler, nil)
		}
	})
	for _, tt := range tests {
		id := e.send(tt.action, req{params: `"not an object"`})
		rep := e.replies.get(id)
		wantError(t, rep, tt.kind, tt.message)
		if rep.RetryAfter.Std() != tt.retryAfter {
			t.Errorf("%s: retry_after %s, want %s", tt.action, rep.RetryAfter.Std(), tt.retryAfter)
		}
	}
	e.logs.waitFor(t, "handler panicked", "stack=")
}

// A transient failure releases the barrier: the next attempt runs, and once
// one succeeded the others get its output.
func TestTransientFailureRunsAgain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "flaky.act"
	var calls counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			if calls.add(r.IdempotencyKey) == 1 {
				return nil, errors.New("try again")
			}
			return r.Attempt, nil
		}, nil)
	})
	saga := uuid.NewString()
	wantError(t, e.replies.get(e.send(action, req{saga: saga, attempt: 1})), events.ErrorTransient, "try again")
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), "2")
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 3})), "2")
	if n := calls.total(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
}

// TestTransientAnswerIsKept: an attempt answered with a transient error
// never runs later. A redelivery of it (a lost ack, a participant killed
// after replying) could otherwise take effect after the coordinator
// stopped retrying the node — the saga unwinding, say — and nobody would
// undo it. The simulation (coordinator tests) found this.
func TestTransientAnswerIsKept(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "hiccup.act"
	var calls, undos counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			if calls.add(r.IdempotencyKey) == 1 {
				return nil, errors.New("try again")
			}
			return "ran", nil
		}, func(_ context.Context, r *participant.Request) (any, error) {
			undos.add(r.IdempotencyKey)
			return nil, nil
		})
	})
	saga := uuid.NewString()
	wantError(t, e.replies.get(e.send(action, req{saga: saga, attempt: 1})), events.ErrorTransient, "try again")
	// The saga unwinds instead of retrying: the undo finds nothing done.
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo})), "")
	// Attempt 1 comes again: it must not run now.
	e.send(action, req{saga: saga, attempt: 1, msgID: "redelivered"})
	e.settled(action)
	if n, u := calls.total(), undos.total(); n != 1 || u != 0 {
		t.Fatalf("action ran %d times and undo %d times; want 1 and 0", n, u)
	}

	// Without the undo: a repeat of attempt 1 gets its answer again, and
	// attempt 2 runs.
	saga = uuid.NewString()
	wantError(t, e.replies.get(e.send(action, req{saga: saga, attempt: 1})), events.ErrorTransient, "try again")
	e.send(action, req{saga: saga, attempt: 1, msgID: "redelivered again"})
	e.settled(action)
	if n := calls.get(saga + ":n"); n != 1 {
		t.Fatalf("a repeat of an answered attempt ran: %d runs", n)
	}
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), `"ran"`)
}

func TestRepeatedRequestRunsOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "seats.book"
	var calls counter
	release := make(chan struct{})
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, r *participant.Request) (any, error) {
			n := calls.add(r.IdempotencyKey)
			if r.Node == "slow" {
				<-release
			}
			return map[string]any{"seat": "12A", "run": n}, nil
		}, nil)
	})

	// One after the other: the same attempt again (a resend after the
	// duplicate window), then attempt 2 after attempt 1 succeeded.
	saga := uuid.NewString()
	id := e.send(action, req{saga: saga})
	wantOK(t, e.replies.get(id), `{"run":1,"seat":"12A"}`)
	e.send(action, req{saga: saga, msgID: "resend"})
	e.settled(action)
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), `{"run":1,"seat":"12A"}`)
	// Even past its deadline, a request gets the recorded output.
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 3, deadline: time.Now().Add(-time.Second)})), `{"run":1,"seat":"12A"}`)
	if n := calls.get(saga + ":n"); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}

	// At the same time: the duplicate finds the first one running, waits,
	// and is answered from the record.
	saga = uuid.NewString()
	id = e.send(action, req{saga: saga, node: "slow"})
	natstest.Eventually(t, wait, func() error {
		if calls.get(saga+":slow") == 0 {
			return errors.New("handler not started")
		}
		return nil
	})
	e.send(action, req{saga: saga, node: "slow", msgID: "duplicate"})
	e.logs.waitFor(t, "another worker holds the barrier lock", saga)
	close(release)
	wantOK(t, e.replies.get(id), `{"run":1,"seat":"12A"}`)
	e.settled(action)
	if n := calls.get(saga + ":slow"); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
}

func TestPermanentFailureIsRecorded(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "cards.charge"
	var calls counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			if calls.add(r.IdempotencyKey) > 1 {
				return "charged", nil // would succeed now, after the saga recorded the failure
			}
			return nil, participant.Permanent(errors.New("card declined"))
		}, nil)
	})
	saga := uuid.NewString()
	id := e.send(action, req{saga: saga})
	wantError(t, e.replies.get(id), events.ErrorPermanent, "card declined")
	// The same attempt again (a redelivery) gets the recorded answer.
	e.send(action, req{saga: saga, msgID: "resend"})
	e.settled(action)
	if n := calls.total(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	// A later attempt comes only from an operator's retry of the failed
	// node (a saga waiting for an operator): it runs.
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), `"charged"`)
	e.settled(action)
	if n := calls.total(); n != 2 {
		t.Fatalf("handler ran %d times, want twice", n)
	}
}

func TestUndoBeforeDo(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "rooms.book"
	var dos, undos counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action,
			func(_ context.Context, r *participant.Request) (any, error) {
				dos.add(r.IdempotencyKey)
				return "booked", nil
			},
			func(_ context.Context, r *participant.Request) (any, error) {
				undos.add(r.IdempotencyKey)
				return nil, nil
			})
	})
	saga := uuid.NewString()
	// The action timed out (outcome unknown) before it ever ran: its undo
	// comes first and succeeds without calling the undo handler.
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo})), "")
	// The action's request, arriving late, is refused for good.
	wantError(t, e.replies.get(e.send(action, req{saga: saga})), events.ErrorPermanent, "arrived after its undo")
	// A repeated undo is still fine.
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo, attempt: 2})), "")
	if dos.total() != 0 || undos.total() != 0 {
		t.Fatalf("handlers ran: do %d, undo %d; want neither", dos.total(), undos.total())
	}

	// Done, undone, and then the action again: refused too; the undo ran once.
	saga = uuid.NewString()
	wantOK(t, e.replies.get(e.send(action, req{saga: saga})), `"booked"`)
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo, output: `"booked"`})), "")
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo, output: `"booked"`, attempt: 2})), "")
	wantError(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), events.ErrorPermanent, "arrived after its undo")
	if dos.get(saga+":n") != 1 || undos.get(saga+":n") != 1 {
		t.Fatalf("do ran %d times, undo %d; want once each", dos.get(saga+":n"), undos.get(saga+":n"))
	}
}

func TestUndoFailureCanBeRetried(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "rooms.hold"
	var undos counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, ok("held"), func(_ context.Context, r *participant.Request) (any, error) {
			if undos.add(r.IdempotencyKey) == 1 {
				return nil, errors.New("hotel API down")
			}
			return nil, nil
		})
	})
	saga := uuid.NewString()
	wantOK(t, e.replies.get(e.send(action, req{saga: saga})), `"held"`)
	wantError(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo})), events.ErrorTransient, "hotel API down")
	// Still done: a late action request gets its output, the undo runs again.
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), `"held"`)
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo, attempt: 2})), "")
	if n := undos.total(); n != 2 {
		t.Fatalf("undo ran %d times, want 2", n)
	}
}

func TestNoUndoRegistered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "mail.send"
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, ok("sent"), nil)
	})
	saga := uuid.NewString()
	wantOK(t, e.replies.get(e.send(action, req{saga: saga})), `"sent"`)
	wantError(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo})), events.ErrorPermanent, "no undo registered for action mail.send")
	// An action that never ran needs no undo handler to be undone.
	wantOK(t, e.replies.get(e.send(action, req{op: events.OpUndo})), "")
}

func TestBarrierDisabled(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "own.idempotency"
	var calls counter
	e.start(participant.Config{DisableBarrier: true}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			return calls.add(r.IdempotencyKey), nil
		}, func(_ context.Context, r *participant.Request) (any, error) {
			calls.add("undo")
			return nil, nil
		})
	})
	saga := uuid.NewString()
	wantOK(t, e.replies.get(e.send(action, req{saga: saga})), "1")
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), "2")
	wantOK(t, e.replies.get(e.send(action, req{op: events.OpUndo})), "")
	if calls.get("undo") != 1 {
		t.Fatalf("undo ran %d times, want once", calls.get("undo"))
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "slow.act"
	var calls counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, r *participant.Request) (any, error) {
			calls.add(r.IdempotencyKey)
			<-ctx.Done()
			return nil, ctx.Err()
		}, nil)
	})
	// Past its deadline already: not run.
	past := uuid.NewString()
	wantError(t, e.replies.get(e.send(action, req{saga: past, deadline: time.Now().Add(-time.Second)})),
		events.ErrorTransient, "passed before the handler started")
	// The handler's context ends at the deadline.
	soon := uuid.NewString()
	wantError(t, e.replies.get(e.send(action, req{saga: soon, deadline: time.Now().Add(300 * time.Millisecond)})),
		events.ErrorTransient, context.DeadlineExceeded.Error())
	if calls.get(past+":n") != 0 || calls.get(soon+":n") != 1 {
		t.Fatalf("calls %d and %d, want 0 and 1", calls.get(past+":n"), calls.get(soon+":n"))
	}
}

func TestCompetingParticipants(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "shared.work"
	const requests = 10
	release := make(chan struct{})
	var calls [2]counter
	var running [2]counter
	for i := range 2 {
		e.start(participant.Config{Name: fmt.Sprintf("worker-%d", i), Concurrency: 2}, func(p *participant.Participant) {
			mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
				calls[i].add(r.SagaID)
				running[i].add("now")
				<-release
				return i, nil
			}, nil)
		})
	}
	ids := make([]string, requests)
	for i := range ids {
		ids[i] = e.send(action, req{})
	}
	// Each can run two at once, so both must be busy.
	natstest.Eventually(t, wait, func() error {
		if a, b := running[0].get("now"), running[1].get("now"); a != 2 || b != 2 {
			return fmt.Errorf("running %d and %d, want 2 and 2", a, b)
		}
		return nil
	})
	close(release)
	for _, id := range ids {
		wantOK(t, e.replies.get(id), "")
	}
	e.settled(action)
	if a, b := calls[0].total(), calls[1].total(); a == 0 || b == 0 || a+b != requests {
		t.Fatalf("handled %d and %d, want both some and %d in all", a, b, requests)
	}
	for i := range 2 {
		for saga, n := range calls[i].snapshot() {
			if n != 1 || calls[1-i].get(saga) != 0 {
				t.Fatalf("saga %s handled %d times by worker %d and %d by the other", saga, n, i, calls[1-i].get(saga))
			}
		}
	}
}

func TestStopDrains(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "drain.me"
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls counter
	p, _ := e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(context.Context, *participant.Request) (any, error) {
			calls.add("first")
			started <- struct{}{}
			<-release
			return "finished", nil
		}, nil)
	})
	first := e.send(action, req{})
	<-started

	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(testCtx(t)) }()
	e.logs.waitFor(t, "participant stopping")
	second := e.send(action, req{}) // not taken any more
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a handler was running", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// The reply was sent before Stop returned.
	wantOK(t, e.replies.get(first), `"finished"`)
	if err := p.Stop(testCtx(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if n := calls.total(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	// Another participant takes the request the stopped one did not.
	e.start(participant.Config{}, func(p *participant.Participant) { mustRegister(t, p, action, ok("second"), nil) })
	wantOK(t, e.replies.get(second), `"second"`)
}

func TestStopTimeoutCancelsHandlers(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "stuck.handler"
	started := make(chan struct{}, 1)
	cause := make(chan error, 1)
	p, _ := e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, _ *participant.Request) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		}, nil)
	})
	id := e.send(action, req{})
	<-started
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want context.DeadlineExceeded", err)
	}
	if err := <-cause; !errors.Is(err, participant.ErrStopping) {
		t.Fatalf("handler's context cause %v, want ErrStopping", err)
	}
	// No reply was sent; the request was given back with the barrier
	// released, so another participant runs it at once.
	e.start(participant.Config{}, func(p *participant.Participant) { mustRegister(t, p, action, ok("rescued"), nil) })
	wantOK(t, e.replies.get(id), `"rescued"`)
	if n := len(e.replies.byID[id]); n != 1 {
		t.Fatalf("%d replies, want 1", n)
	}
}

// A participant dies in the middle of an action: the request comes back
// after AckWait, to another participant, which takes over once the dead
// one's barrier lock expires; the effect happens once.
func TestKilledParticipant(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "vm.create"
	cfg := participant.Config{AckWait: time.Second, LockTTL: time.Second}
	var effects counter
	aStarted := make(chan struct{}, 1)
	aCause := make(chan error, 1)
	_, ncA := e.start(cfg, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, _ *participant.Request) (any, error) {
			aStarted <- struct{}{}
			<-ctx.Done() // dies before the effect
			aCause <- context.Cause(ctx)
			return nil, ctx.Err()
		}, nil)
	})
	saga := uuid.NewString()
	id := e.send(action, req{saga: saga})
	<-aStarted
	ncA.Close() // killed: no reply, no ack, no lock renewal

	cfg.Name = "survivor"
	e.start(cfg, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			return effects.add(r.IdempotencyKey), nil
		}, nil)
	})
	wantOK(t, e.replies.get(id), "1")
	if err := <-aCause; !errors.Is(err, participant.ErrLockLost) {
		t.Fatalf("dead participant's handler context cause %v, want ErrLockLost", err)
	}
	// Repeats get the recorded outcome.
	e.send(action, req{saga: saga, msgID: "resend"})
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), "1")
	e.settled(action)
	if n := effects.get(saga + ":n"); n != 1 {
		t.Fatalf("effect happened %d times, want once", n)
	}
	e.logs.waitFor(t, "taking over an interrupted run", "survivor")
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "strict.act"
	e.start(participant.Config{}, func(p *participant.Participant) { mustRegister(t, p, action, ok("fine"), nil) })

	saga := uuid.NewString()
	encode := func(data events.Data) []byte {
		b, err := events.Encode(events.Event{ID: uuid.NewString(), Source: events.SourceCoordinator, SagaID: saga, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	request := func(action, replyTo string) *events.ActionRequest {
		return &events.ActionRequest{Op: events.OpDo, Node: "n", Action: action, Attempt: 1, Params: json.RawMessage("null"), ReplyTo: replyTo}
	}
	e.publish(action, []byte("not json at all"), "m1")
	e.publish(action, encode(&events.ActionReply{RequestID: "x", Op: events.OpDo, Node: "n", Attempt: 1, OK: true}), "m2")
	e.publish(action, encode(request("other.act", streams.ReplySubject(0))), "m3")
	e.publish(action, encode(request(action, "jetsaga.reply.*")), "m4")
	e.publish(action, encode(&events.ActionRequest{Op: "redo", Node: "n", Action: action, Attempt: 1, ReplyTo: "x"}), "m5")

	// It carries on.
	wantOK(t, e.replies.get(e.send(action, req{})), `"fine"`)
	e.settled(action)
	for _, reason := range []string{
		"not a CloudEvent JSON object",
		"want " + string(events.TypeActionRequest),
		`is for action \"other.act\"`,
		"has a wildcard",
		"data.op",
	} {
		e.logs.waitFor(t, "malformed request terminated", reason)
	}
	c, err := e.js.Consumer(testCtx(t), streams.WorkStream, streams.ActionConsumerName(action))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 {
		t.Fatalf("%d requests redelivered, want none", info.NumRedelivered)
	}
	if e.replies.all != 1 {
		t.Fatalf("%d replies, want 1", e.replies.all)
	}
}

// A handler running longer than AckWait is not redelivered: progress is
// reported while it runs. The barrier is off, so a redelivery would run it
// twice.
func TestInProgress(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "long.act"
	var calls counter
	var mu sync.Mutex
	var progressErr error
	e.start(participant.Config{AckWait: 500 * time.Millisecond, DisableBarrier: true}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, r *participant.Request) (any, error) {
			calls.add(r.IdempotencyKey)
			mu.Lock()
			progressErr = participant.InProgress(ctx)
			mu.Unlock()
			work := time.NewTimer(2 * time.Second) // the long work, four times AckWait
			defer work.Stop()
			select {
			case <-work.C:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}, nil)
	})
	wantOK(t, e.replies.get(e.send(action, req{})), `"done"`)
	e.settled(action)
	mu.Lock()
	defer mu.Unlock()
	if progressErr != nil {
		t.Fatalf("InProgress: %v", progressErr)
	}
	if n := calls.total(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	c, err := e.js.Consumer(testCtx(t), streams.WorkStream, streams.ActionConsumerName(action))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(testCtx(t)); err != nil || info.NumRedelivered != 0 {
		t.Fatalf("consumer info %v, redelivered %d; want no redelivery", err, info.NumRedelivered)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := participant.New(nil, participant.Config{Name: "has space", Concurrency: -1, AckWait: time.Millisecond, LockTTL: -time.Second})
	if !errors.Is(err, participant.ErrInvalidConfig) {
		t.Fatalf("New = %v, want ErrInvalidConfig", err)
	}
	for _, field := range []string{"JetStream is nil", "Name", "Concurrency", "AckWait", "LockTTL"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("New's error does not mention %s:\n%v", field, err)
		}
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	p, err := participant.New(js, participant.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); !errors.Is(err, participant.ErrNoActions) {
		t.Fatalf("Start with nothing registered = %v, want ErrNoActions", err)
	}
	for _, name := range []string{"", "a..b", "a.*", "a b"} {
		if err := p.Register(name, ok(nil), nil); !errors.Is(err, participant.ErrInvalidRegistration) || !errors.Is(err, streams.ErrInvalidActionName) {
			t.Errorf("Register(%q) = %v, want ErrInvalidRegistration and streams.ErrInvalidActionName", name, err)
		}
	}
	if err := p.Register("a.b", nil, nil); !errors.Is(err, participant.ErrInvalidRegistration) {
		t.Errorf("Register with a nil do = %v, want ErrInvalidRegistration", err)
	}
	mustRegister(t, p, "a.b", ok(nil), nil)
	if err := p.Register("a.b", ok(nil), nil); !errors.Is(err, participant.ErrInvalidRegistration) {
		t.Errorf("Register twice = %v, want ErrInvalidRegistration", err)
	}

	// No topology: Start says what is missing.
	err = p.Start(ctx)
	var missing *streams.MissingError
	if !errors.Is(err, streams.ErrMissing) || !errors.As(err, &missing) ||
		!strings.Contains(err.Error(), streams.WorkStream) || !strings.Contains(err.Error(), streams.BarrierBucket) {
		t.Fatalf("Start without topology = %v, want a MissingError naming %s and %s", err, streams.WorkStream, streams.BarrierBucket)
	}

	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if _, err := js.Consumer(ctx, streams.WorkStream, streams.ActionConsumerName("a.b")); err != nil {
		t.Fatalf("consumer of a.b: %v", err)
	}
	if err := p.Register("c.d", ok(nil), nil); !errors.Is(err, participant.ErrStarted) {
		t.Errorf("Register after Start = %v, want ErrStarted", err)
	}
	for range 2 {
		if err := p.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	if err := p.Start(ctx); !errors.Is(err, participant.ErrStopped) {
		t.Fatalf("Start after Stop = %v, want ErrStopped", err)
	}

	// Stop before Start is fine too.
	q, err := participant.New(js, participant.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(ctx); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
}

// A consumer deleted under a running participant (by an operator, say) is
// recreated, and requests keep being served.
func TestConsumerRecreated(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "resilient.act"
	e.start(participant.Config{}, func(p *participant.Participant) { mustRegister(t, p, action, ok("still here"), nil) })
	wantOK(t, e.replies.get(e.send(action, req{})), `"still here"`)
	if err := e.js.DeleteConsumer(testCtx(t), streams.WorkStream, streams.ActionConsumerName(action)); err != nil {
		t.Fatal(err)
	}
	e.logs.waitFor(t, "request consumer closed; recreating it")
	wantOK(t, e.replies.get(e.send(action, req{})), `"still here"`)
}

// A reply that cannot be published gives the request back; it comes back
// and is answered from the barrier's record, without running again.
func TestReplyPublishFails(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "reply.later"
	var calls counter
	e.start(participant.Config{}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			return calls.add(r.IdempotencyKey), nil
		}, nil)
	})
	e.send(action, req{replyTo: "test.replies"}) // no stream takes it, yet
	e.logs.waitFor(t, "publish reply; request comes back")
	s, err := e.js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "TEST_REPLIES", Subjects: []string{"test.replies"}})
	if err != nil {
		t.Fatal(err)
	}
	e.settled(action)
	natstest.Eventually(t, wait, func() error {
		info, err := s.Info(testCtx(t))
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			return fmt.Errorf("%d replies, want 1", info.State.Msgs)
		}
		return nil
	})
	if n := calls.total(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
}

// A consumer another participant created with another config (deliver new,
// as a participant in another language did, and a shorter ack wait) is
// bound to as it is, not updated (which the server refuses for a deliver
// policy); progress follows its ack wait. A consumer that would deliver the
// wrong requests is refused with what to do.
func TestConsumerMadeByAnother(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "shared.act"
	// Its ack wait (1 s) is under the third of this participant's own
	// (5 s), so only progress that follows the consumer prevents a
	// redelivery.
	cfg := streams.ActionConsumer(action, time.Second)
	cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	if _, err := e.js.CreateConsumer(testCtx(t), streams.WorkStream, cfg); err != nil {
		t.Fatal(err)
	}
	var calls counter
	e.start(participant.Config{DisableBarrier: true}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(ctx context.Context, r *participant.Request) (any, error) {
			calls.add(r.IdempotencyKey)
			time.Sleep(2500 * time.Millisecond) // over twice the consumer's ack wait
			return "bound", nil
		}, nil)
	})
	e.logs.waitFor(t, "differs from the protocol's config", "deliver policy is new")
	wantOK(t, e.replies.get(e.send(action, req{})), `"bound"`)
	c, err := e.js.Consumer(testCtx(t), streams.WorkStream, streams.ActionConsumerName(action))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.DeliverPolicy != jetstream.DeliverNewPolicy || info.Config.AckWait != time.Second {
		t.Fatalf("consumer changed to deliver %s, ack wait %s; want it left as created", info.Config.DeliverPolicy, info.Config.AckWait)
	}
	if info.Delivered.Consumer != 1 || calls.total() != 1 {
		t.Fatalf("1 request delivered %d times and handled %d times: progress did not follow the consumer's ack wait", info.Delivered.Consumer, calls.total())
	}

	const wrong = "wrong.act"
	bad := streams.ActionConsumer(wrong, 0)
	bad.FilterSubject = streams.RequestSubject("other.act")
	if _, err := e.js.CreateConsumer(testCtx(t), streams.WorkStream, bad); err != nil {
		t.Fatal(err)
	}
	p, err := participant.New(e.js, participant.Config{DisableBarrier: true})
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, p, wrong, ok(nil), nil)
	err = p.Start(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), `filters ["jetsaga.req.other.act"]`) || !strings.Contains(err.Error(), "nats consumer rm") {
		t.Fatalf("Start with a consumer filtering another action = %v, want it refused with what to do", err)
	}
	_ = p.Stop(testCtx(t))
}

// With LegacyBarrierKeys, a record an earlier release kept at
// "<saga>.<node>" answers a request whose action's key space has none (the
// handler does not run), and the first write carries it over into the
// action's key space.
func TestLegacyBarrierKeys(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const action = "legacy.act"
	var calls counter
	e.start(participant.Config{LegacyBarrierKeys: true}, func(p *participant.Participant) {
		mustRegister(t, p, action, func(_ context.Context, r *participant.Request) (any, error) {
			calls.add(r.IdempotencyKey)
			return "ran again", nil
		}, ok(nil))
	})
	saga := uuid.NewString()
	kv, err := e.js.KeyValue(testCtx(t), streams.BarrierBucket)
	if err != nil {
		t.Fatal(err)
	}
	old := `{"state":"done","request_id":"` + saga + `:n:do:1","output":"from the old release","updated":"2026-11-01T00:00:00Z"}`
	if _, err := kv.Create(testCtx(t), barrier.LegacyKey(saga, "n"), []byte(old)); err != nil {
		t.Fatal(err)
	}
	wantOK(t, e.replies.get(e.send(action, req{saga: saga})), `"from the old release"`)
	if n := calls.get(saga + ":n"); n != 0 {
		t.Fatalf("handler ran %d times; the legacy record should have answered", n)
	}
	wantOK(t, e.replies.get(e.send(action, req{saga: saga, op: events.OpUndo, output: `"from the old release"`})), "")
	if e, err := kv.Get(testCtx(t), barrier.Key(action, saga, "n")); err != nil || !strings.Contains(string(e.Value()), `"state":"undone"`) {
		t.Fatalf("the undo's record is not in the action's key space: %v", err)
	}
	wantError(t, e.replies.get(e.send(action, req{saga: saga, attempt: 2})), events.ErrorPermanent, "after its undo")
}
