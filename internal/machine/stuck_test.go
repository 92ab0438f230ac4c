package machine_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

// A saga is stuck once it has come to rest with failed undos: one
// saga.stuck lists them all, and nothing follows it until an operator acts
// (issue 11, §2).

// fork is a saga whose nodes a and b are independent, both undoable, and
// c, after both, fails.
func fork() *saga.Definition {
	return saga.New("fork").
		Parallel(saga.Action("a", "svc.a").Undo("svc.ua"), saga.Action("b", "svc.b").Undo("svc.ub")).
		Then(saga.Action("c", "svc.c")).MustBuild()
}

// unwindingFork is fork after a and b succeeded and c failed: both undos
// are outstanding.
func unwindingFork(t *testing.T) *sim {
	t.Helper()
	m := newSim(t, fork(), `{}`)
	m.succeed("a", `1`)
	m.succeed("b", `1`)
	m.fail("c", events.ErrorPermanent)
	return m
}

// lastEvent is the type and node of the log's last event.
func (m *sim) lastEvent() string {
	ts := m.types()
	return ts[len(ts)-1]
}

func stuckUndos(t *testing.T, m *sim) []string {
	t.Helper()
	flat := m.flat()
	st, ok := flat[len(flat)-1].Data.(*events.SagaStuck)
	if !ok {
		t.Fatalf("the last event is %s, not saga.stuck", m.lastEvent())
	}
	var out []string
	for _, u := range st.Undos {
		out = append(out, u.Node+" "+string(u.Error.Kind))
	}
	return out
}

func TestStuckWaitsForEveryIndependentUndo(t *testing.T) {
	t.Parallel()
	m := unwindingFork(t)
	// a's undo fails while b's still runs: not stuck yet.
	m.undoFail("a", events.ErrorPermanent)
	if m.s.Status != machine.StatusUnwinding {
		t.Fatalf("status %s while b's undo runs", m.s.Status)
	}
	// b's undo fails too: now stuck, once, with both.
	m.undoFail("b", events.ErrorPermanent)
	if m.s.Status != machine.StatusStuck {
		t.Fatal(m.s.Status)
	}
	if got, want := stuckUndos(t, m), []string{"a permanent", "b permanent"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("saga.stuck lists %v, want %v", got, want)
	}
	stuck := 0
	for _, ty := range m.types() {
		if strings.HasPrefix(ty, "saga.stuck") {
			stuck++
		}
	}
	if stuck != 1 {
		t.Fatalf("%d saga.stuck events: %v", stuck, m.types())
	}
	m.checkReplay()
}

func TestStuckAfterTheOtherUndoFinishes(t *testing.T) {
	t.Parallel()
	m := unwindingFork(t)
	m.undoFail("a", events.ErrorPermanent)
	m.undone("b")
	if m.s.Status != machine.StatusStuck || m.lastEvent() != "saga.stuck a" {
		t.Fatalf("status %s, last event %s", m.s.Status, m.lastEvent())
	}
	m.checkReplay()
}

func TestStuckWaitsForActionsInFlight(t *testing.T) {
	t.Parallel()
	// b is still running when c fails; a's undo fails first.
	def := saga.New("f").Then(saga.Action("a", "svc.a").Undo("svc.ua")).
		Parallel(saga.Action("b", "svc.b").Undo("svc.ub"), saga.Action("c", "svc.c")).MustBuild()
	m := newSim(t, def, `{}`)
	m.succeed("a", `1`)
	m.fail("c", events.ErrorPermanent)
	// a's undo waits for b, which is still in flight.
	m.succeed("b", `1`)
	m.undoFail("b", events.ErrorPermanent)
	if m.s.Status != machine.StatusStuck || m.state("a") != machine.NodeSucceeded {
		t.Fatalf("status %s, a %s", m.s.Status, m.state("a"))
	}
	m.checkReplay()
}

// An operator's retry or resolve returns the saga to unwinding; it is stuck
// again when it comes to rest with failed undos.
func TestOperatorActionsUnstickAndTheSagaMayStickAgain(t *testing.T) {
	t.Parallel()
	m := unwindingFork(t)
	m.undoFail("a", events.ErrorPermanent)
	m.undoFail("b", events.ErrorPermanent)
	m.must(machine.Resolve{Now: m.now, Node: "a", Operator: "ops", Reason: "by hand"})
	if m.s.Status != machine.StatusStuck {
		t.Fatal(m.s.Status)
	}
	if got := m.types()[len(m.types())-2:]; !reflect.DeepEqual(got, []string{"operator.resolve a", "saga.stuck b"}) {
		t.Fatalf("log ends %v", got)
	}
	m.must(machine.RetryUndo{Now: m.now, Node: "b", Operator: "ops"})
	if m.s.Status != machine.StatusUnwinding {
		t.Fatal(m.s.Status)
	}
	m.undone("b")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

// A paused saga with an undo ready to start is not at rest: it unwinds on
// when resumed, and is stuck only then.
func TestPauseHoldsStuckBack(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Parallel(
		saga.Action("a", "svc.a").Undo("svc.ua"),
		saga.Action("b", "svc.b").Undo("svc.ub"),
		saga.Action("b2", "svc.b2").Undo("svc.ub2").After("b"),
		saga.Action("c", "svc.c").After("a", "b2"),
	).MustBuild()
	m := newSim(t, def, `{}`)
	m.succeed("a", `1`)
	m.succeed("b", `1`)
	m.succeed("b2", `1`)
	m.fail("c", events.ErrorPermanent)
	m.must(machine.Pause{Now: m.now})
	m.undoFail("a", events.ErrorPermanent)
	m.undone("b2") // b's undo is ready, but paused
	if m.s.Status != machine.StatusUnwinding || m.state("b") != machine.NodeSucceeded {
		t.Fatalf("status %s, b %s", m.s.Status, m.state("b"))
	}
	m.must(machine.Resume{Now: m.now})
	m.undone("b")
	if m.s.Status != machine.StatusStuck || m.lastEvent() != "saga.stuck a" {
		t.Fatalf("status %s, last %s", m.s.Status, m.lastEvent())
	}
	m.checkReplay()
}

func TestStuckEventsThatBreakTheRulesAreIllegal(t *testing.T) {
	t.Parallel()
	m := unwindingFork(t)
	m.undoFail("a", events.ErrorPermanent)
	next := len(m.flat())
	for _, c := range []struct {
		name string
		d    events.Data
		want string
	}{
		{"not at rest", &events.SagaStuck{Undos: []events.FailedUndo{{Node: "a"}}}, "only at rest"},
	} {
		if err := m.s.Clone().Apply(logEvent(next, c.d)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	m.undoFail("b", events.ErrorPermanent)
	// Stuck: check the list, then that nothing follows but an operator.
	stuckAt := len(m.flat()) - 1
	s, err := machine.Fold(sagaID, m.flat()[:stuckAt])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		undos []events.FailedUndo
		want  string
	}{
		{"one missing", []events.FailedUndo{{Node: "b"}}, "every failed undo (2), not 1"},
		{"out of order", []events.FailedUndo{{Node: "b"}, {Node: "a"}}, "graph order"},
	} {
		if err := s.Clone().Apply(logEvent(stuckAt, &events.SagaStuck{Undos: c.undos})); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	next = len(m.flat())
	if err := m.s.Clone().Apply(logEvent(next, &events.UndoStarted{Node: "a", Attempt: 2})); err == nil || !strings.Contains(err.Error(), "the saga is stuck: nothing happens until an operator") {
		t.Errorf("undo while stuck: %v", err)
	}
	if err := m.s.Clone().Apply(logEvent(next, &events.SagaStuck{Undos: []events.FailedUndo{{Node: "a"}, {Node: "b"}}})); err == nil {
		t.Error("stuck while stuck accepted")
	}
}

// A log written when saga.stuck named one node, with undos still running
// after it, folds as it did; an operator's action then brings the saga
// under the rules of this release.
func TestLegacyStuckLogsFold(t *testing.T) {
	t.Parallel()
	def := fork()
	perm := events.Error{Kind: events.ErrorPermanent, Message: "no"}
	log := []events.Event{
		logEvent(0, &events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}),
		logEvent(1, &events.NodeStarted{Node: "a", Attempt: 1, Deadline: t0}),
		logEvent(2, &events.NodeStarted{Node: "b", Attempt: 1, Deadline: t0}),
		logEvent(3, &events.NodeSucceeded{Node: "a", Attempt: 1}),
		logEvent(4, &events.NodeSucceeded{Node: "b", Attempt: 1}),
		logEvent(5, &events.NodeStarted{Node: "c", Attempt: 1, Deadline: t0}),
		logEvent(6, &events.NodeFailed{Node: "c", Attempt: 1, Error: perm}),
		logEvent(7, &events.SagaUnwinding{Reason: events.UnwindNodeFailed, Node: "c"}),
		logEvent(8, &events.UndoStarted{Node: "a", Attempt: 1, Deadline: t0}),
		logEvent(9, &events.UndoStarted{Node: "b", Attempt: 1, Deadline: t0}),
		logEvent(10, &events.UndoFailed{Node: "a", Attempt: 1, Error: perm}),
		logEvent(11, &events.SagaStuckV1{Node: "a", Error: perm}),
		logEvent(12, &events.UndoFailed{Node: "b", Attempt: 1, Error: perm}),
		logEvent(13, &events.SagaStuckV1{Node: "b", Error: perm}),
	}
	s, err := machine.Fold(sagaID, log)
	if err != nil {
		t.Fatalf("legacy log: %v", err)
	}
	if s.Status != machine.StatusStuck {
		t.Fatal(s.Status)
	}
	m := emptySim(t)
	m.s, m.log = s, [][]events.Event{log}
	m.must(machine.Resolve{Now: m.now, Node: "a", Operator: "ops", Reason: "by hand"})
	if m.s.Status != machine.StatusStuck || m.lastEvent() != "saga.stuck b" {
		t.Fatalf("status %s, last %s", m.s.Status, m.lastEvent())
	}
	m.must(machine.Resolve{Now: m.now, Node: "b", Operator: "ops", Reason: "by hand"})
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}
