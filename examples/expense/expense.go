// Package expense is the approval example: an expense claim reserves
// budget, waits for a manager's approval (and a director's, for a large
// claim), pays out, and mails a receipt. It shows the saga semantics that
// are data in the definition:
//
//   - Waits (kind await): the manager's and the director's approvals are
//     signals sent by people, through `jetsaga signal` or client.Signal;
//     the signal's data becomes the node's output, a rejection fails it.
//   - Conditions (when): the director's approval runs only for claims over
//     DirectorLimit; for smaller ones it is skipped, never run, never
//     undone.
//   - A pivot: once the payout has gone, the saga can no longer go back.
//     The receipt after it is retried forward, and when its retries run
//     out the saga waits for an operator (retry, or skip with an output)
//     instead of unwinding a payment that has been made.
//   - Undo of a wait: if the claim unwinds after the manager approved
//     (the director rejects it), the manager is told it was withdrawn.
//   - A deadline: a claim nobody has decided on within a week unwinds.
//
// The budget, payouts, notices and receipts are kept in a KV bucket (the
// ledger), standing in for the finance system and the mail server.
package expense

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
const Bucket = "example_expense_ledger"

// DirectorLimit is the amount above which a director approves too.
const DirectorLimit = 1000

// Params are a claim's params.
type Params struct {
	Claim    string `json:"claim"`
	Employee string `json:"employee"`
	Amount   int    `json:"amount"`
	// Email is where the receipt goes; Bounce makes every receipt fail
	// (a full mailbox), after the payout.
	Email string `json:"email"`
}

// Bounce is a mailbox that is always full.
const Bounce = "full@example.com"

// Approval is what an approver's signal carries.
type Approval struct {
	By   string `json:"by"`
	Note string `json:"note,omitempty"`
}

// Definition is the claim saga:
//
//	reserve → manager (await) → director (await, when amount > 1000) → pay (pivot) → receipt
func Definition() *saga.Definition {
	return saga.New("expense.claim").
		Deadline(7*24*time.Hour, saga.Unwind).
		Then(saga.Action("reserve", "budget.reserve").Undo("budget.release")).
		Then(saga.Await("manager", "expense.manager_approved").Undo("expense.withdrawn")).
		Then(saga.Await("director", "expense.director_approved").When(fmt.Sprintf("params.amount > %d", DirectorLimit))).
		Then(saga.Action("pay", "payouts.transfer").Pivot().Reads("manager")).
		Then(saga.Action("receipt", "mail.receipt").
			Retry(saga.RetryPolicy{MaxAttempts: 3, InitialDelay: saga.Duration(100 * time.Millisecond)})).
		MustBuild()
}

// Entry is what the finance system and the mail server record.
type Entry struct {
	// Kind is "reservation", "payout", "notice" or "receipt".
	Kind   string `json:"kind"`
	Claim  string `json:"claim"`
	Amount int    `json:"amount,omitempty"`
	To     string `json:"to,omitempty"`
	Text   string `json:"text,omitempty"`
}

// Register adds the budget, payout, notice and mail participants to p.
func Register(ctx context.Context, js jetstream.JetStream, p *participant.Participant) error {
	l, err := ledger.Open(ctx, js, Bucket)
	if err != nil {
		return err
	}
	params := func(req *participant.Request) (Params, error) {
		var c Params
		return c, req.DecodeParams(&c)
	}
	reserve := func(ctx context.Context, req *participant.Request) (any, error) {
		c, err := params(req)
		if err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, Entry{Kind: "reservation", Claim: c.Claim, Amount: c.Amount})
	}
	release := func(ctx context.Context, req *participant.Request) (any, error) {
		return nil, l.Remove(ctx, req.IdempotencyKey)
	}
	// The manager approved, then the claim unwound: tell them. The request
	// carries the approval (the signal's data) as the output undone.
	withdrawn := func(ctx context.Context, req *participant.Request) (any, error) {
		c, err := params(req)
		if err != nil {
			return nil, err
		}
		var a Approval
		if err := req.DecodeOutput(&a); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey+":notice", Entry{Kind: "notice", Claim: c.Claim, To: a.By,
			Text: fmt.Sprintf("claim %s, which you approved, was withdrawn", c.Claim)})
	}
	pay := func(ctx context.Context, req *participant.Request) (any, error) {
		c, err := params(req)
		if err != nil {
			return nil, err
		}
		var a Approval
		if err := req.Lookup("manager", &a); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, Entry{Kind: "payout", Claim: c.Claim, Amount: c.Amount, To: c.Employee})
	}
	receipt := func(ctx context.Context, req *participant.Request) (any, error) {
		c, err := params(req)
		if err != nil {
			return nil, err
		}
		if c.Email == Bounce {
			return nil, fmt.Errorf("mailbox %s is full", c.Email) // transient
		}
		return l.Add(ctx, req.IdempotencyKey, Entry{Kind: "receipt", Claim: c.Claim, To: c.Email})
	}
	return errors.Join(
		p.Register("budget.reserve", reserve, release),
		p.RegisterUndo("expense.withdrawn", withdrawn),
		p.Register("payouts.transfer", pay, nil),
		p.Register("mail.receipt", receipt, nil),
	)
}

// Entries lists what a saga left in the ledger, by key.
func Entries(ctx context.Context, js jetstream.JetStream, sagaID string) (map[string]Entry, error) {
	return ledger.Read[Entry](ctx, js, Bucket, sagaID)
}
