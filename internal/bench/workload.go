package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// Workload is a saga shape to benchmark, with its participants.
type Workload struct {
	Name        string
	Description string
	// Definition is the saga every run starts.
	Definition *saga.Definition
	// Outcome is how each saga must end: "succeeded" or "unwound".
	Outcome string
	// Nodes counts the action nodes a saga runs (for per-node figures).
	Nodes int
	// Delay is how long each action takes.
	Delay time.Duration
}

// OutputSize is the size of each action's output (which the next node
// looks up).
const OutputSize = 100

// Action names of the benchmark's participants.
const (
	actionStep = "bench.step"
	actionFail = "bench.fail"
)

// Workloads lists the workloads by name.
func Workloads() []Workload {
	step := func(name string) saga.NodeSpec { return saga.Action(name, actionStep).Undo(actionStep) }
	linear := saga.New("bench.linear-3").Then(step("a")).Then(step("b")).Then(step("c")).MustBuild()
	unwind := saga.New("bench.unwind-3").Then(step("a")).Then(step("b")).
		Then(saga.Action("c", actionFail).Retry(saga.RetryPolicy{MaxAttempts: 1})).MustBuild()
	fan := make([]saga.NodeSpec, 10)
	for i := range fan {
		fan[i] = step(fmt.Sprintf("f%d", i))
	}
	fanout := saga.New("bench.fanout-10").Parallel(fan...).Then(step("join")).MustBuild()
	inner := saga.New("bench.inner").Then(step("x")).Then(step("y")).Then(step("z")).MustBuild()
	sub := saga.New("bench.subsaga").Then(step("a")).Then(saga.Subsaga("sub", inner, "")).Then(step("c")).MustBuild()
	slow := saga.New("bench.slow").Then(step("a")).Then(step("b")).Then(step("c")).MustBuild()
	return []Workload{
		{Name: "linear-3", Description: "a → b → c; each output (~100 bytes) looked up by the next", Definition: linear, Outcome: "succeeded", Nodes: 3},
		{Name: "unwind-3", Description: "a → b → c; c fails for good, so b then a are undone", Definition: unwind, Outcome: "unwound", Nodes: 3},
		{Name: "fanout-10", Description: "10 parallel nodes, then a join that looks up all ten", Definition: fanout, Outcome: "succeeded", Nodes: 11},
		{Name: "subsaga", Description: "a → sub(x → y → z) → c", Definition: sub, Outcome: "succeeded", Nodes: 5},
		{Name: "slow", Description: "linear-3 with actions that take 50 ms: concurrency scaling", Definition: slow, Outcome: "succeeded", Nodes: 3, Delay: 50 * time.Millisecond},
	}
}

// LookupWorkload returns the workload called name.
func LookupWorkload(name string) (Workload, error) {
	var names []string
	for _, w := range Workloads() {
		if w.Name == name {
			return w, nil
		}
		names = append(names, w.Name)
	}
	return Workload{}, fmt.Errorf("bench: unknown workload %q (want one of %s)", name, strings.Join(names, ", "))
}

// register adds the workload's actions to p: steps that look up what the
// request carries and return OutputSize bytes, and an action that fails.
func (w Workload) register(p *participant.Participant) error {
	pad := strings.Repeat("x", OutputSize-len(`{"pad":""}`))
	type output struct {
		Pad string `json:"pad"`
	}
	step := func(ctx context.Context, req *participant.Request) (any, error) {
		for _, name := range slices.Sorted(maps.Keys(req.Outputs)) {
			var o output
			if err := req.Lookup(name, &o); err != nil {
				return nil, err
			}
		}
		if w.Delay > 0 {
			t := time.NewTimer(w.Delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
		return output{Pad: pad}, nil
	}
	undo := func(context.Context, *participant.Request) (any, error) { return nil, nil }
	fail := func(context.Context, *participant.Request) (any, error) {
		return nil, participant.Permanent(errors.New("bench: this node always fails"))
	}
	return errors.Join(p.Register(actionStep, step, undo), p.Register(actionFail, fail, nil))
}
