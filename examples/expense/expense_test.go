package expense_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/examples/expense"
	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
)

func TestMain(m *testing.M) { natstest.Main(m) }

func TestExpenseDemo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := demo.Start(ctx, demo.Options{Dir: t.TempDir()}, expense.Register)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	var out bytes.Buffer
	sagas, err := expense.Demo(ctx, env.Client, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{client.StatusSucceeded, client.StatusUnwound, client.StatusSucceeded}
	if len(sagas) != len(want) {
		t.Fatalf("%d sagas, want %d", len(sagas), len(want))
	}
	kinds := func(s *client.Saga) map[string]int {
		entries, err := expense.Entries(ctx, env.JS, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		k := map[string]int{}
		for _, e := range entries {
			k[e.Kind]++
		}
		return k
	}
	for i, s := range sagas {
		if s.Status != want[i] {
			t.Fatalf("saga %d is %s, want %s", i+1, s.Status, want[i])
		}
	}
	// 1: paid and mailed; the director's approval skipped.
	if d, _ := sagas[0].Node("director"); d.State != "skipped" {
		t.Fatalf("director %s", d.State)
	}
	if k := kinds(sagas[0]); k["reservation"] != 1 || k["payout"] != 1 || k["receipt"] != 1 {
		t.Fatalf("claim 1 left %v", k)
	}
	// 2: nothing left but the notice to the manager.
	if k := kinds(sagas[1]); k["reservation"] != 0 || k["payout"] != 0 || k["notice"] != 1 {
		t.Fatalf("claim 2 left %v", k)
	}
	// 3: paid, never unwound; the receipt skipped by the operator.
	r, _ := sagas[2].Node("receipt")
	if k := kinds(sagas[2]); k["payout"] != 1 || k["receipt"] != 0 || r.SkippedBy != "mailed from the office" || sagas[2].Pivot != "pay" {
		t.Fatalf("claim 3 left %v, receipt %+v", k, r)
	}
	for _, line := range []string{"director skipped (params.amount > 1000 was false)", "unwound: budget released", "past pivot pay, the receipt failed"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q", line)
		}
	}
}

// expense.yaml is the definition Definition builds.
func TestYAMLMatchesDefinition(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("expense.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := saga.ParseYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(expense.Definition())
	got, _ := json.Marshal(def)
	if string(got) != string(want) {
		t.Fatalf("expense.yaml differs from expense.Definition():\n%s\n%s", got, want)
	}
}
