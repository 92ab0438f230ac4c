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

// The log describes itself (issue 11, §5): a saga records the defaults it
// started with, and folding it never reads the release's defaults.

// noPolicies is a saga whose node sets no policy or timeout of its own.
func noPolicies() *saga.Definition {
	return saga.New("bare").Then(saga.Action("a", "svc.a").Undo("svc.ua")).MustBuild()
}

func TestStartRecordsTheDefaults(t *testing.T) {
	t.Parallel()
	m := newSim(t, noPolicies(), `{}`)
	created := m.log[0][0].Data.(*events.SagaCreated)
	if created.Defaults == nil || !reflect.DeepEqual(*created.Defaults, saga.CurrentDefaults()) {
		t.Fatalf("saga.created defaults %+v, want %+v", created.Defaults, saga.CurrentDefaults())
	}
	if r := m.req("a", events.OpDo); !r.Request.Deadline.Equal(t0.Add(saga.DefaultTimeout)) {
		t.Fatalf("deadline %s", r.Request.Deadline)
	}
}

// attemptsLog is a log in which node a of noPolicies fails n-1 times with a
// transient error and starts attempt n, written under the given defaults.
func attemptsLog(defaults *saga.Defaults, n int) []events.Event {
	log := []events.Event{logEvent(0, &events.SagaCreated{Definition: noPolicies(), Params: json.RawMessage(`{}`), Defaults: defaults})}
	for a := 1; a <= n; a++ {
		log = append(log, logEvent(len(log), &events.NodeStarted{Node: "a", Attempt: a, Deadline: t0.Add(time.Hour)}))
		if a < n {
			log = append(log, logEvent(len(log), &events.NodeAttemptFailed{Node: "a", Attempt: a,
				Error: events.Error{Kind: events.ErrorTransient, Message: "x"}, RetryAt: t0.Add(time.Minute)}))
		}
	}
	return log
}

func TestFoldUsesTheDefaultsTheLogRecords(t *testing.T) {
	t.Parallel()
	five := saga.CurrentDefaults()
	five.Retry = saga.RetryPolicy{MaxAttempts: 5, InitialDelay: saga.Duration(7 * time.Second)}
	five.Timeout = saga.Duration(time.Minute)

	// Five attempts are legal under the recorded defaults, though this
	// release's default allows three.
	s, err := machine.Fold(sagaID, attemptsLog(&five, 5))
	if err != nil {
		t.Fatalf("fold under recorded defaults: %v", err)
	}
	if _, err := machine.Fold(sagaID, attemptsLog(&five, 6)); err == nil || !strings.Contains(err.Error(), "attempt 5 is the last the policy allows") {
		t.Fatalf("a sixth attempt: %v", err)
	}
	// Decisions follow the recorded defaults too: the fifth attempt fails
	// for good; with four, the retry waits the recorded delay.
	d, err := machine.Decide(s, machine.Reply{Now: t0, Reply: events.ActionReply{RequestID: events.RequestID(sagaID, "a", events.OpDo, 5),
		Op: events.OpDo, Node: "a", Attempt: 5, Error: &events.Error{Kind: events.ErrorTransient, Message: "x"}}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, n, _ := d.State.Node("a"); n.State != machine.NodeFailed || n.Error.Kind != events.ErrorRetriesExhausted {
		t.Fatalf("after the fifth failure: a = %+v", n)
	}
	s4, err := machine.Fold(sagaID, attemptsLog(&five, 4))
	if err != nil {
		t.Fatal(err)
	}
	d, err = machine.Decide(s4, machine.TimerFired{Now: t0, Timer: machine.Timer{Kind: machine.TimerTimeout, Op: events.OpDo, Node: "a", Attempt: 4}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, n, _ := d.State.Node("a"); !n.RetryAt.Equal(t0.Add(8 * 7 * time.Second)) {
		t.Fatalf("retry at %s, want 7s·2³ after the fourth attempt", n.RetryAt.Sub(t0))
	}

	// A log written before defaults were recorded folds with the defaults
	// of that time (three attempts), whatever this release's are.
	if _, err := machine.Fold(sagaID, attemptsLog(nil, 3)); err != nil {
		t.Fatalf("legacy log: %v", err)
	}
	if _, err := machine.Fold(sagaID, attemptsLog(nil, 4)); err == nil || !strings.Contains(err.Error(), "attempt 3 is the last the policy allows") {
		t.Fatalf("legacy log, fourth attempt: %v", err)
	}

	// Recorded defaults that make no sense are refused.
	bad := five
	bad.Retry.MaxAttempts, bad.Timeout = 0, 0
	_, err = machine.Fold(sagaID, attemptsLog(&bad, 1))
	var ie *machine.IllegalEventError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "retry: max_attempts is 0") || !strings.Contains(err.Error(), "timeout is 0s") {
		t.Fatalf("bad defaults: %v", err)
	}
}

// Sagas of one definition share its compiled graph through the Graphs a
// coordinator owns; a fold without one compiles its own.
func TestGraphsAreShared(t *testing.T) {
	t.Parallel()
	def := saga.New("shared").Then(saga.Action("a", "svc.a")).MustBuild()
	start := func(s *machine.State) *machine.State {
		t.Helper()
		d, err := machine.Decide(s, machine.Start{Now: t0, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}}, machine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return d.State
	}
	graphs := machine.NewGraphs()
	a, b := start(graphs.New(sagaID)), start(graphs.New(sagaID))
	if a.Graph != b.Graph {
		t.Fatal("two sagas of one definition compiled it twice with a shared Graphs")
	}
	if other := machine.NewGraphs(); start(other.New(sagaID)).Graph == a.Graph {
		t.Fatal("two coordinators' Graphs share a graph")
	}
	if start(machine.New(sagaID)).Graph == a.Graph {
		t.Fatal("a fold without Graphs got the shared graph")
	}
}
