package sagatest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// approvals is a tiny system for an expense saga: holds of budget, an
// outbox of notices, payments.
type approvals struct {
	mu       sync.Mutex
	held     map[string]bool // idempotency key → held
	notices  []string
	payments map[string]int
	failPay  bool // pay fails for good until an operator fixes it
}

func (a *approvals) snapshot() any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return [3]int{len(a.held), len(a.notices), len(a.payments)}
}

func expenseKit(t *testing.T, a *approvals) *Kit {
	k := New(t, WithBarrier())
	k.Register("budget.hold", func(_ context.Context, r *participant.Request) (any, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.held[r.IdempotencyKey] = true
		return map[string]bool{"held": true}, nil
	}, func(_ context.Context, r *participant.Request) (any, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.held, r.IdempotencyKey)
		return nil, nil
	})
	// The approval's undo tells the approver the expense was withdrawn.
	k.RegisterUndo("notice.withdrawn", func(_ context.Context, r *participant.Request) (any, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.notices = append(a.notices, "withdrawn: "+string(r.Output))
		return nil, nil
	})
	k.Register("pay.transfer", func(_ context.Context, r *participant.Request) (any, error) {
		var note string
		if err := r.Lookup("note", &note); !errors.Is(err, participant.ErrSkipped) {
			return nil, participant.Permanent(errors.New("note should have been skipped"))
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.failPay {
			return nil, participant.Permanent(errors.New("bank says no"))
		}
		a.payments[r.IdempotencyKey] = 1
		return map[string]int{"paid": 1}, nil
	}, nil)
	k.Register("mail.send", func(_ context.Context, r *participant.Request) (any, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.notices = append(a.notices, "mail")
		return nil, nil
	}, nil)
	return k
}

// expense: hold budget → approval (await, undo: notice) → note (skipped
// unless params.note) → pay (pivot) → mail.
func expenseDef() *saga.Definition {
	return saga.New("expense").
		Then(saga.Action("hold", "budget.hold").Undo("budget.hold")).
		Then(saga.Await("approval", "expense.approved").Undo("notice.withdrawn")).
		Then(saga.Action("note", "mail.send").When(`has(params.note) && params.note`)).
		Then(saga.Action("pay", "pay.transfer").Pivot().Retry(saga.RetryPolicy{MaxAttempts: 1})).
		Then(saga.Action("mail", "mail.send")).
		MustBuild()
}

func TestKitDrivesWaitsConditionsAndOperators(t *testing.T) {
	t.Parallel()
	a := &approvals{held: map[string]bool{}, payments: map[string]int{}}
	k := expenseKit(t, a)
	def := expenseDef()

	// The kit signals every saga its checks start; unwinding past the
	// approval runs its undo, and leaves the system as it was (but for
	// the notices, which the undo writes on purpose).
	k.Signals(map[string]any{"approval": map[string]bool{"ok": true}})
	s := k.Run(def, map[string]any{})
	if s.Status != client.StatusSucceeded {
		t.Fatalf("run: %s", s.Status)
	}

	// Driven by hand: the signal, then pay fails past nothing (before the
	// pivot succeeded): the saga unwinds, the approval's undo runs.
	k.Signals(nil)
	a.failPay = true
	id := k.Start(def, map[string]any{})
	k.WaitAwaiting(id, "approval")
	k.Signal(id, "approval", map[string]bool{"ok": true})
	s = k.WaitDone(id)
	if s.Status != client.StatusUnwound || len(a.notices) != 2 || a.notices[1] != `withdrawn: {"ok":true}` {
		t.Fatalf("unwound: %s, notices %q", s.Status, a.notices)
	}

	// With on_failure: pause, the saga waits; an operator retries once
	// the bank is fixed.
	paused := def.Clone()
	paused.OnFailure = saga.Pause
	id = k.Start(paused, map[string]any{})
	k.Signal(id, "approval", map[string]bool{"ok": true})
	k.WaitWaiting(id, "pay")
	a.failPay = false
	k.Retry(id, "pay", nil)
	if s = k.WaitDone(id); s.Status != client.StatusSucceeded {
		t.Fatalf("after retry: %s", s.Status)
	}

	// A rejected approval unwinds the budget hold.
	id = k.Start(def, map[string]any{})
	k.Reject(id, "approval", "not this quarter")
	if s = k.WaitDone(id); s.Status != client.StatusUnwound {
		t.Fatalf("rejected: %s", s.Status)
	}
}
