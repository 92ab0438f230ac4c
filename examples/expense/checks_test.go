package expense_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jetsaga/jetsaga/examples/expense"
	"github.com/jetsaga/jetsaga/examples/internal/ledger"
	"github.com/jetsaga/jetsaga/sagatest"
)

// The claim saga's nodes pass every sagatest check. The kit gives the
// approvals their signals; the receipt comes after the pivot, so its
// failure waits for an operator and the unwind checks leave it out.
func TestClaimNodesPassEveryCheck(t *testing.T) {
	k := sagatest.New(t)
	if err := expense.Register(context.Background(), k.JetStream(), k.Participant()); err != nil {
		t.Fatal(err)
	}
	k.Signals(map[string]any{
		"manager":  expense.Approval{By: "grace"},
		"director": expense.Approval{By: "barbara"},
	})
	capture := func(reset bool) func(testing.TB) any {
		return func(t testing.TB) any {
			s, err := ledger.State(context.Background(), k.JetStream(), expense.Bucket, reset,
				func(e expense.Entry) string {
					if e.Kind == "notice" {
						return "" // the approver is told of a withdrawal: on purpose
					}
					return fmt.Sprintf("%s of %s: %d %s", e.Kind, e.Claim, e.Amount, e.To)
				})
			if err != nil {
				t.Fatalf("ledger: %v", err)
			}
			return slices.DeleteFunc(s, func(v string) bool { return v == "" })
		}
	}
	hooks := sagatest.Hooks{Before: capture(true), After: capture(false)}
	params := func() any {
		return expense.Params{Claim: "c-9", Employee: "ada", Amount: 2500, Email: "ada@example.com"}
	}
	def := expense.Definition()
	k.ActionsSucceedIdempotently(def, params, hooks)
	k.ActionFailureCanUnwind(def, params, hooks)
	k.ActionFailureCanUnwindIdempotently(def, params, hooks)
	k.CrashAtEveryEvent(def, params, hooks)
	k.NoStuckUndos()
}
