package machine_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

// newSimWithFaults starts a saga with faults injected at creation.
func newSimWithFaults(t *testing.T, def *saga.Definition, faults ...events.Fault) *sim {
	t.Helper()
	m := emptySim(t)
	m.must(machine.Start{Now: m.now, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}, Faults: faults})
	return m
}

func (m *sim) inject(f events.Fault) machine.Decision {
	m.t.Helper()
	return m.must(machine.InjectFault{Now: m.now, Fault: f, Operator: "test", Reason: "testing"})
}

func (m *sim) sent(node string, op events.Op) int {
	k := 0
	for _, b := range m.log {
		for _, e := range b {
			switch d := e.Data.(type) {
			case *events.NodeStarted:
				if op == events.OpDo && d.Node == node && !d.Deadline.IsZero() {
					k++
				}
			case *events.UndoStarted:
				if op == events.OpUndo && d.Node == node && !d.Deadline.IsZero() {
					k++
				}
			}
		}
	}
	return k
}

func TestInjectedActionFailureUnwindsWithoutRunningTheAction(t *testing.T) {
	t.Parallel()
	m := newSimWithFaults(t, chain("a", "b", "c"), events.Fault{Node: "b", FailAction: true})
	d := m.succeed("a", `1`)
	if len(d.Commands) != 2 || m.s.Status != machine.StatusUnwinding {
		t.Fatalf("status %s, commands %+v; want unwinding with a's undo", m.s.Status, d.Commands)
	}
	if r := m.req("a", events.OpUndo); r.Request.Node != "a" {
		t.Fatal(r)
	}
	_, b, _ := m.s.Node("b")
	if b.State != machine.NodeFailed || b.Error.Kind != events.ErrorInjected || b.OutcomeUnknown {
		t.Fatalf("b = %+v", b)
	}
	m.undone("a")
	if m.s.Status != machine.StatusUnwound || m.s.Unwinding.Node != "b" {
		t.Fatalf("status %s, unwinding %+v", m.s.Status, m.s.Unwinding)
	}
	if m.sent("b", events.OpDo) != 0 || m.sent("b", events.OpUndo) != 0 {
		t.Fatal("the failed node's action or undo was requested")
	}
	want := []string{"saga.created", "fault.injected b", "node.started a", "node.succeeded a", "node.started b", "node.failed b",
		"saga.unwinding b", "node.undo_started a", "node.undo_finished a", "saga.finished"}
	if got := m.types(); !reflect.DeepEqual(got, want) {
		t.Fatalf("log:\n got %v\nwant %v", got, want)
	}
	m.checkReplay()
}

func TestInjectedFailureOfTheFirstNodeEndsInOneDecision(t *testing.T) {
	t.Parallel()
	m := newSimWithFaults(t, chain("a", "b"), events.Fault{Node: "a", FailAction: true})
	if m.s.Status != machine.StatusUnwound || len(m.log) != 1 || len(m.pending) != 0 {
		t.Fatalf("status %s after %d messages, pending %v", m.s.Status, len(m.log), m.pendingNames())
	}
	m.checkReplay()
}

func TestInjectedFailureInParallelBranchStopsOtherStarts(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Parallel(saga.Action("a", "svc.a").Undo("svc.ua"), saga.Action("b", "svc.b").Undo("svc.ub"), saga.Action("c", "svc.c")).MustBuild()
	m := newSimWithFaults(t, def, events.Fault{Node: "b", FailAction: true})
	// a started before b failed; c never starts.
	if m.state("a") != machine.NodeStarted || m.state("c") != machine.NodePending || m.s.Status != machine.StatusUnwinding {
		t.Fatalf("a %s, c %s, saga %s", m.state("a"), m.state("c"), m.s.Status)
	}
	m.succeed("a", `1`)
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestInjectedUndoFailureSticksUntilClearedAndRetried(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.inject(events.Fault{Node: "a", FailUndo: true})
	m.succeed("a", `1`)
	m.fail("b", events.ErrorPermanent)
	_, a, _ := m.s.Node("a")
	if m.s.Status != machine.StatusStuck || a.State != machine.NodeUndoFailed || a.Error.Kind != events.ErrorInjected {
		t.Fatalf("saga %s, a %+v", m.s.Status, a)
	}
	if m.sent("a", events.OpUndo) != 0 {
		t.Fatal("a's undo was requested")
	}
	// Retrying with the fault still there fails again, without a request.
	m.must(machine.RetryUndo{Now: m.now, Node: "a", Operator: "op"})
	if m.s.Status != machine.StatusStuck || len(m.pending) != 0 {
		t.Fatalf("saga %s, pending %v", m.s.Status, m.pendingNames())
	}
	m.inject(events.Fault{Node: "a"}) // clears
	if _, a, _ := m.s.Node("a"); a.Fault != nil {
		t.Fatalf("fault not cleared: %+v", a.Fault)
	}
	m.must(machine.RetryUndo{Now: m.now, Node: "a", Operator: "op"})
	if r := m.req("a", events.OpUndo); r.Request.Attempt != 3 {
		t.Fatalf("undo attempt %d, want 3 (after two injected failures)", r.Request.Attempt)
	}
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestInjectedRepeatRunsTheActionAgainAndKeepsTheLastOutput(t *testing.T) {
	t.Parallel()
	// One attempt allowed: repeats do not count against the policy.
	def := saga.New("r").Then(saga.Action("a", "svc.a").Retry(saga.RetryPolicy{MaxAttempts: 1})).Then(saga.Action("b", "svc.b")).MustBuild()
	m := newSimWithFaults(t, def, events.Fault{Node: "a", Repeat: 3})
	first := m.req("a", events.OpDo)
	m.succeed("a", `"run1"`)
	second := m.req("a", events.OpDo)
	if second.Request.Attempt != 2 || second.Request.IdempotencyKey != first.Request.IdempotencyKey {
		t.Fatalf("second run %+v, want attempt 2 with key %s", second.Request, first.Request.IdempotencyKey)
	}
	// A late success of the first run is not the node's success.
	_, err := m.step(machine.Reply{Now: m.now, Reply: replyTo(first, true, `"late"`, nil)})
	requireRejected(t, err, "injected repeat")
	m.succeed("a", `"run2"`)
	m.succeed("a", `"run3"`)
	_, a, _ := m.s.Node("a")
	if a.State != machine.NodeSucceeded || string(a.Output) != `"run3"` || a.Attempt != 3 || a.Repeats != 2 {
		t.Fatalf("a = %+v", a)
	}
	if got := m.req("b", events.OpDo).Request.Outputs["a"]; string(got) != `"run3"` {
		t.Fatalf("b sees a's output %s", got)
	}
	m.succeed("b", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestInjectedRepeatStillAllowsRetries(t *testing.T) {
	t.Parallel()
	def := saga.New("r").Then(saga.Action("a", "svc.a").Retry(saga.RetryPolicy{MaxAttempts: 2})).MustBuild()
	m := newSimWithFaults(t, def, events.Fault{Node: "a", Repeat: 2})
	m.succeed("a", `1`)
	m.fail("a", events.ErrorTransient) // the repeat's first try
	m.fire("a", events.OpDo, machine.TimerRetry)
	m.succeed("a", `2`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestInjectedUndoRepeat(t *testing.T) {
	t.Parallel()
	m := newSimWithFaults(t, chain("a", "b"), events.Fault{Node: "a", UndoRepeat: 2})
	m.succeed("a", `1`)
	m.fail("b", events.ErrorPermanent)
	m.undone("a")
	if r := m.req("a", events.OpUndo); r.Request.Attempt != 2 || string(r.Request.Output) != `1` {
		t.Fatalf("second undo run %+v", r.Request)
	}
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	if m.sent("a", events.OpUndo) != 2 {
		t.Fatalf("undo requested %d times, want 2", m.sent("a", events.OpUndo))
	}
	m.checkReplay()
}

func TestInjectedDelayHoldsTheRequestBack(t *testing.T) {
	t.Parallel()
	def := saga.New("d").Then(saga.Action("a", "svc.a").Timeout(10 * time.Second)).MustBuild()
	m := newSimWithFaults(t, def, events.Fault{Node: "a", Delay: saga.Duration(3 * time.Second)})
	r := m.req("a", events.OpDo)
	if !r.NotBefore.Equal(t0.Add(3*time.Second)) || !r.Request.Deadline.Equal(t0.Add(13*time.Second)) {
		t.Fatalf("not before %s, deadline %s", r.NotBefore, r.Request.Deadline)
	}
	// Recovery sends it with the same delay, from the log.
	m.pending = map[string]machine.SendRequest{}
	m.must(machine.Recover{Now: t0.Add(time.Second)})
	if r2 := m.req("a", events.OpDo); !r2.NotBefore.Equal(r.NotBefore) {
		t.Fatalf("recovered not before %s", r2.NotBefore)
	}
	m.checkReplay()
}

func TestInjectFaultRejections(t *testing.T) {
	t.Parallel()
	def := saga.New("f").Then(saga.Action("a", "svc.a")).Then(saga.Constant("k", json.RawMessage(`1`))).MustBuild()
	m := newSim(t, def, `{}`)
	for _, c := range []struct {
		f    events.Fault
		want string
	}{
		{events.Fault{Node: "nope", FailAction: true}, `no node "nope"`},
		{events.Fault{Node: "k", FailAction: true}, "action nodes"},
		{events.Fault{Node: "a", Repeat: 1000}, "repeat"},
		{events.Fault{Node: "a", Delay: -1}, "delay"},
		{events.Fault{Node: "a", FailUndo: true}, `node "a" has no undo, so fail-undo cannot apply`},
		{events.Fault{Node: "a", UndoRepeat: 2}, `node "a" has no undo, so undo-repeat cannot apply`},
	} {
		_, err := m.step(machine.InjectFault{Now: m.now, Fault: c.f})
		requireRejected(t, err, c.want)
	}
	m.succeed("a", `1`)
	_, err := m.step(machine.InjectFault{Now: m.now, Fault: events.Fault{Node: "a", FailAction: true}})
	requireRejected(t, err, "finished")
	// At the start too, and in a log.
	_, err = emptySim(t).step(machine.Start{Now: t0, Created: events.SagaCreated{Definition: def}, Faults: []events.Fault{{Node: "a", FailUndo: true}}})
	requireRejected(t, err, `node "a" has no undo`)
	_, err = machine.Fold(sagaID, []events.Event{logEvent(0, &events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}),
		logEvent(1, &events.FaultInjected{Fault: events.Fault{Node: "a", UndoRepeat: 3}})})
	if err == nil || !strings.Contains(err.Error(), "has no undo") {
		t.Fatalf("fold: %v", err)
	}
}

// A log cannot claim an injected failure that no fault asked for.
func TestForgedInjectedFailureIsIllegal(t *testing.T) {
	t.Parallel()
	def := chain("a")
	log := []events.Event{
		logEvent(0, &events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}),
		logEvent(1, &events.NodeStarted{Node: "a", Attempt: 1}),
		logEvent(2, &events.NodeFailed{Node: "a", Attempt: 1, Error: events.Error{Kind: events.ErrorInjected, Message: "x"}}),
	}
	_, err := machine.Fold(sagaID, log)
	var ie *machine.IllegalEventError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "injected failure needs a fault") {
		t.Fatalf("err = %v", err)
	}
	log[2] = logEvent(2, &events.NodeRepeated{Node: "a", Attempt: 1})
	if _, err := machine.Fold(sagaID, log); err == nil || !strings.Contains(err.Error(), "no injected fault") {
		t.Fatalf("err = %v", err)
	}
}

func TestPauseHoldsNewNodesBackUntilResumed(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Then(saga.Action("a", "svc.a")).Parallel(saga.Action("b", "svc.b"), saga.Action("c", "svc.c")).MustBuild()
	m := newSim(t, def, `{}`)
	m.must(machine.Pause{Now: m.now, Operator: "ada", Reason: "maintenance"})
	_, err := m.step(machine.Pause{Now: m.now})
	requireRejected(t, err, "paused already")
	// The request already sent finishes; nothing new starts.
	d := m.succeed("a", `1`)
	if len(d.Commands) != 0 || m.state("b") != machine.NodePending || !m.s.Paused {
		t.Fatalf("paused saga started %v; b %s", d.Commands, m.state("b"))
	}
	m.must(machine.Resume{Now: m.now, Operator: "ada"})
	if m.state("b") != machine.NodeStarted || m.state("c") != machine.NodeStarted {
		t.Fatalf("after resume: b %s, c %s", m.state("b"), m.state("c"))
	}
	_, err = m.step(machine.Resume{Now: m.now})
	requireRejected(t, err, "not paused")
	m.succeed("b", `1`)
	m.succeed("c", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestPauseHoldsUndosBack(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	m.must(machine.Pause{Now: m.now})
	m.fail("b", events.ErrorPermanent)
	if m.s.Status != machine.StatusUnwinding || len(m.pending) != 0 {
		t.Fatalf("saga %s, pending %v", m.s.Status, m.pendingNames())
	}
	m.must(machine.Resume{Now: m.now})
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

// Rule 5 holds whatever ends a node: an attempt that timed out may still
// take effect, so a fault that fails the action afterwards leaves the node's
// outcome unknown, and its undo runs (issue 11, §1).
func TestInjectedFailureAfterATimeoutIsUndone(t *testing.T) {
	t.Parallel()
	def := saga.New("t").Then(saga.Action("n1", "svc.a").Undo("svc.ua").Timeout(300 * time.Millisecond)).MustBuild()
	m := newSim(t, def, `{}`)
	late := m.req("n1", events.OpDo)
	m.inject(events.Fault{Node: "n1", FailAction: true})
	m.fire("n1", events.OpDo, machine.TimerTimeout)
	m.fire("n1", events.OpDo, machine.TimerRetry)
	_, n1, _ := m.s.Node("n1")
	if n1.State != machine.NodeUndoStarted || n1.Error == nil || n1.Error.Kind != events.ErrorOutcomeUnknown || !n1.OutcomeUnknown {
		t.Fatalf("n1 = %+v; want its undo started after an outcome_unknown failure", n1)
	}
	if r := m.req("n1", events.OpUndo); string(r.Request.Output) != "null" {
		t.Fatalf("undo request %+v", r.Request)
	}
	// The late reply of attempt 1 changes nothing; the undo finishes.
	_, err := m.step(machine.Reply{Now: m.now, Reply: replyTo(late, true, `"done late"`, nil)})
	requireRejected(t, err, "")
	m.undone("n1")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

// A run that succeeded before an injected repeat took effect: a fault that
// then fails the action leaves it to be undone.
func TestInjectedFailureAfterARepeatedRunIsUndone(t *testing.T) {
	t.Parallel()
	def := saga.New("t").Then(saga.Action("n1", "svc.a").Undo("svc.ua")).MustBuild()
	m := newSimWithFaults(t, def, events.Fault{Node: "n1", Repeat: 2})
	m.inject(events.Fault{Node: "n1", FailAction: true, Repeat: 2})
	m.succeed("n1", `"run 1"`)
	_, n1, _ := m.s.Node("n1")
	if n1.State != machine.NodeUndoStarted || !n1.OutcomeUnknown {
		t.Fatalf("n1 = %+v; want its undo started", n1)
	}
	m.undone("n1")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

// A log cannot end a node that timed out with a failure of known outcome.
func TestFailureAfterATimeoutMustBeOutcomeUnknown(t *testing.T) {
	t.Parallel()
	def := chain("a")
	for _, kind := range []events.ErrorKind{events.ErrorInjected, events.ErrorPermanent, events.ErrorRetriesExhausted} {
		log := []events.Event{
			logEvent(0, &events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}),
			logEvent(1, &events.FaultInjected{Fault: events.Fault{Node: "a", FailAction: true}}),
			logEvent(2, &events.NodeStarted{Node: "a", Attempt: 1, Deadline: t0.Add(time.Second)}),
			logEvent(3, &events.NodeAttemptFailed{Node: "a", Attempt: 1, Error: events.Error{Kind: events.ErrorTimeout, Message: "no reply"}, RetryAt: t0.Add(2 * time.Second)}),
			logEvent(4, &events.NodeStarted{Node: "a", Attempt: 2}),
			logEvent(5, &events.NodeFailed{Node: "a", Attempt: 2, Error: events.Error{Kind: kind, Message: "x"}}),
		}
		_, err := machine.Fold(sagaID, log)
		var ie *machine.IllegalEventError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "must be outcome_unknown") {
			t.Fatalf("%s: err = %v", kind, err)
		}
	}
}
