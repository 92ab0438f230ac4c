package vm_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/examples/internal/ledger"
	"github.com/jetsaga/jetsaga/examples/vm"
	"github.com/jetsaga/jetsaga/sagatest"
)

// The VM saga's nodes (the instance subsaga's included) pass every
// sagatest check.
func TestVMNodesPassEveryCheck(t *testing.T) {
	k := sagatest.New(t)
	if err := vm.Register(context.Background(), k.JetStream(), k.Participant()); err != nil {
		t.Fatal(err)
	}
	// A resource is told by its fields; their values hold saga ids.
	capture := func(reset bool) func(testing.TB) any {
		return func(t testing.TB) any {
			s, err := ledger.State(context.Background(), k.JetStream(), vm.Bucket, reset,
				func(r map[string]any) string { return strings.Join(slices.Sorted(maps.Keys(r)), ",") })
			if err != nil {
				t.Fatalf("resources: %v", err)
			}
			return s
		}
	}
	hooks := sagatest.Hooks{Before: capture(true), After: capture(false)}
	params := func() any { return vm.Params{Name: "web-1"} }
	def := vm.Definition()
	k.ActionsSucceedIdempotently(def, params, hooks)
	k.ActionFailureCanUnwind(def, params, hooks)
	k.ActionFailureCanUnwindIdempotently(def, params, hooks)
	k.CrashAtEveryEvent(def, params, hooks)
	k.NoStuckUndos()
}
