package machine_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

// approval: reserve → approval (await) → capture (pivot) → ship.
func approval(t *testing.T, opts ...func(*saga.Builder)) *saga.Definition {
	t.Helper()
	b := saga.New("order").
		Then(saga.Action("reserve", "inv.reserve").Undo("inv.release")).
		Then(saga.Await("approval", "order.approved").Undo("mail.withdrawn")).
		Then(saga.Action("capture", "pay.capture").Pivot().Retry(saga.RetryPolicy{MaxAttempts: 1})).
		Then(saga.Action("ship", "ship.send").Retry(saga.RetryPolicy{MaxAttempts: 2, InitialDelay: saga.Duration(time.Second)}))
	for _, o := range opts {
		o(b)
	}
	def, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func (m *sim) signal(node, id, data, reject string) (machine.Decision, error) {
	m.t.Helper()
	in := machine.Signal{Now: m.now, Node: node, ID: id, Reject: reject, Sender: "test"}
	if data != "" {
		in.Data = json.RawMessage(data)
	}
	return m.step(in)
}

func TestAwaitTakesItsSignal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		early bool // the signal comes before the node starts
	}{{"late", false}, {"early", true}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := newSim(t, approval(t), `{"amount":5}`)
			if c.early {
				if _, err := m.signal("approval", "sig-1", `{"by":"ann"}`, ""); err != nil {
					t.Fatal(err)
				}
				if m.state("approval") != machine.NodePending {
					t.Fatalf("approval is %s", m.state("approval"))
				}
			}
			m.succeed("reserve", `{"r":1}`)
			if !c.early {
				if m.state("approval") != machine.NodeStarted {
					t.Fatalf("approval is %s, want started (waiting)", m.state("approval"))
				}
				if len(m.pending) != 0 {
					t.Fatalf("an await sent requests: %v", m.pendingNames())
				}
				if _, err := m.signal("approval", "sig-1", `{"by":"ann"}`, ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, n, _ := m.s.Node("approval"); n.State != machine.NodeSucceeded || string(n.Output) != `{"by":"ann"}` {
				t.Fatalf("approval %s output %s", n.State, n.Output)
			}
			if got := m.req("capture", events.OpDo).Request.Outputs["approval"]; string(got) != `{"by":"ann"}` {
				t.Fatalf("capture sees approval %s", got)
			}
			// The same signal again is a duplicate; another is refused.
			_, err := m.signal("approval", "sig-1", `{"by":"ann"}`, "")
			if !errors.Is(err, machine.ErrDuplicateSignal) {
				t.Fatalf("duplicate: %v", err)
			}
			_, err = m.signal("approval", "sig-2", `{"by":"bob"}`, "")
			requireRejected(t, err, "has taken signal sig-1 already")
			m.checkReplay()
		})
	}
}

func TestSignalsThatCannotApplyAreRefused(t *testing.T) {
	t.Parallel()
	m := newSim(t, approval(t), `{}`)
	for _, c := range []struct{ node, id, data, reject, want string }{
		{"nope", "s", "", "", `the saga has no node "nope"`},
		{"reserve", "s", "", "", `node "reserve" is a action node; signals are for await nodes`},
		{"approval", "", "", "", "a signal needs an id"},
		{"approval", "s", "{", "", "not JSON"},
		{"approval", "s", "1", "no", "not both"},
	} {
		_, err := m.signal(c.node, c.id, c.data, c.reject)
		requireRejected(t, err, c.want)
	}
	m.succeed("reserve", `1`)
	m.must(machine.Abort{Now: m.now, Reason: "test"})
	_, err := m.signal("approval", "s", "", "")
	requireRejected(t, err, "the saga is unwinding")
	if m.state("approval") != machine.NodeFailed {
		t.Fatalf("the waiting await is %s after the abort, want failed (canceled)", m.state("approval"))
	}
	m.undone("reserve")
	_, err = m.signal("approval", "s", "", "")
	requireRejected(t, err, "the saga has finished")
	m.checkReplay()
}

func TestRejectedSignalUnwindsAndAwaitTimesOut(t *testing.T) {
	t.Parallel()
	m := newSim(t, approval(t), `{}`)
	m.succeed("reserve", `1`)
	if _, err := m.signal("approval", "s1", "", "over budget"); err != nil {
		t.Fatal(err)
	}
	if m.s.Status != machine.StatusUnwinding {
		t.Fatalf("status %s", m.s.Status)
	}
	if _, n, _ := m.s.Node("approval"); n.Error == nil || n.Error.Kind != events.ErrorRejected {
		t.Fatalf("approval error %+v", n.Error)
	}
	m.undone("reserve")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}

	// With a timeout and no signal: the node fails as a timeout.
	def := saga.New("t").Then(saga.Action("a", "x.a").Undo("x.b")).Then(saga.Await("w", "e").Timeout(time.Hour)).MustBuild()
	m = newSim(t, def, `{}`)
	m.succeed("a", `1`)
	m.fire("w", events.OpDo, machine.TimerTimeout)
	if _, n, _ := m.s.Node("w"); n.State != machine.NodeFailed || n.Error.Kind != events.ErrorTimeout {
		t.Fatalf("w %s %+v", n.State, n.Error)
	}
	m.undone("a")
	m.checkReplay()
}

func TestAwaitUndoRunsWhenTheSagaUnwindsPastIt(t *testing.T) {
	t.Parallel()
	def := saga.New("u").
		Then(saga.Await("approval", "ok").Undo("mail.withdrawn")).
		Then(saga.Action("pay", "pay.charge")).MustBuild()
	m := newSim(t, def, `{}`)
	if _, err := m.signal("approval", "s", `{"ok":true}`, ""); err != nil {
		t.Fatal(err)
	}
	m.fail("pay", events.ErrorPermanent)
	r := m.req("approval", events.OpUndo)
	if r.Action != "mail.withdrawn" || r.Request.Action != "mail.withdrawn" || string(r.Request.Output) != `{"ok":true}` {
		t.Fatalf("undo request %+v", r)
	}
	m.undone("approval")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestConditions(t *testing.T) {
	t.Parallel()
	inner := saga.New("inner").Then(saga.Action("x", "svc.x").Undo("svc.ux")).MustBuild()
	def := saga.New("c").
		Then(saga.Action("quote", "svc.quote")).
		Parallel(
			saga.Action("big", "svc.big").Undo("svc.ubig").When(`outputs.quote.amount > 100`),
			saga.Action("small", "svc.small").Undo("svc.usmall").When(`outputs.quote.amount <= 100`),
			saga.Subsaga("extra", inner, "").When(`params.extra`),
		).
		Then(saga.Action("notify", "svc.notify").After("big", "small", "extra")).
		MustBuild()
	m := newSim(t, def, `{"extra": false}`)
	m.succeed("quote", `{"amount": 250}`)
	for node, want := range map[string]machine.NodeState{"big": machine.NodeStarted, "small": machine.NodeSkipped,
		"extra/@start": machine.NodeSkipped, "extra/x": machine.NodeSkipped, "extra": machine.NodeSkipped} {
		if got := m.state(node); got != want {
			t.Errorf("%s is %s, want %s", node, got, want)
		}
	}
	m.succeed("big", `"b"`)
	r := m.req("notify", events.OpDo).Request
	if !reflect.DeepEqual(r.Skipped, []string{"extra", "small"}) || string(r.Outputs["big"]) != `"b"` {
		t.Fatalf("notify request skipped %v outputs %v", r.Skipped, keys(r.Outputs))
	}
	// Unwinding never undoes a skipped node.
	m.fail("notify", events.ErrorPermanent)
	m.undone("big")
	if m.s.Status != machine.StatusUnwound {
		t.Fatalf("status %s, pending %v", m.s.Status, m.pendingNames())
	}
	for _, e := range m.flat() {
		if u, ok := e.Data.(*events.UndoStarted); ok && (u.Node == "small" || u.Node == "extra/x") {
			t.Fatalf("skipped node %s undone", u.Node)
		}
	}
	m.checkReplay()
}

func TestConditionErrorFailsTheNode(t *testing.T) {
	t.Parallel()
	def := saga.New("c").
		Then(saga.Action("a", "svc.a").Undo("svc.ua")).
		Then(saga.Action("b", "svc.b").When(`params.limit > 10`)).MustBuild()
	m := newSim(t, def, `{}`)
	m.succeed("a", `1`)
	_, n, _ := m.s.Node("b")
	if n.State != machine.NodeFailed || n.Error.Kind != events.ErrorCondition || m.s.Status != machine.StatusUnwinding {
		t.Fatalf("b %s %+v, saga %s", n.State, n.Error, m.s.Status)
	}
	if want := `when "params.limit > 10": no such key: limit`; n.Error.Message != want {
		t.Fatalf("message %q, want %q", n.Error.Message, want)
	}
	m.checkReplay()
}

func TestPauseOnFailureThenRetrySkipOrAbort(t *testing.T) {
	t.Parallel()
	def := func() *saga.Definition {
		return saga.New("p").OnFailure(saga.Pause).
			Then(saga.Action("a", "svc.a").Undo("svc.ua")).
			Parallel(saga.Action("b", "svc.b").Undo("svc.ub").Retry(saga.RetryPolicy{MaxAttempts: 1}), saga.Action("c", "svc.c")).
			Then(saga.Action("d", "svc.d")).MustBuild()
	}
	held := func(t *testing.T) *sim {
		m := newSim(t, def(), `{"v":1}`)
		m.succeed("a", `1`)
		m.fail("b", events.ErrorPermanent)
		if m.s.Status != machine.StatusWaiting || !reflect.DeepEqual(m.s.Held(), []string{"b"}) {
			t.Fatalf("status %s held %v", m.s.Status, m.s.Held())
		}
		// c was in flight: it finishes, and d does not start.
		m.succeed("c", `1`)
		if m.state("d") != machine.NodePending {
			t.Fatal("d started while the saga waited for an operator")
		}
		return m
	}
	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		m := held(t)
		m.must(machine.RetryUndo{Now: m.now, Node: "b", Operator: "ann", Reason: "fixed the quota", Params: json.RawMessage(`{"v":2}`)})
		if m.s.Status != machine.StatusRunning {
			t.Fatal(m.s.Status)
		}
		r := m.req("b", events.OpDo)
		if r.Request.Attempt != 2 || string(r.Request.Params) != `{"v":2}` {
			t.Fatalf("retry request %+v", r.Request)
		}
		m.succeed("b", `1`)
		m.succeed("d", `1`)
		if m.s.Status != machine.StatusSucceeded {
			t.Fatal(m.s.Status)
		}
		m.checkReplay()
	})
	t.Run("skip", func(t *testing.T) {
		t.Parallel()
		m := held(t)
		_, err := m.step(machine.Skip{Now: m.now, Node: "b", Output: json.RawMessage(`{}`)})
		requireRejected(t, err, "skipping needs a reason")
		m.must(machine.Skip{Now: m.now, Node: "b", Operator: "ann", Reason: "done by hand", Output: json.RawMessage(`{"manual":true}`)})
		if got := m.req("d", events.OpDo).Request.Outputs["b"]; string(got) != `{"manual":true}` {
			t.Fatalf("d sees b = %s", got)
		}
		m.succeed("d", `1`)
		if m.s.Status != machine.StatusSucceeded {
			t.Fatal(m.s.Status)
		}
		m.checkReplay()
	})
	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		m := held(t)
		m.must(machine.Abort{Now: m.now, Operator: "ann", Reason: "customer cancelled"})
		m.undone("a")
		if m.s.Status != machine.StatusUnwound {
			t.Fatalf("status %s pending %v", m.s.Status, m.pendingNames())
		}
		m.checkReplay()
	})
}

func TestPivotGoesOnlyForward(t *testing.T) {
	t.Parallel()
	m := newSim(t, approval(t), `{}`)
	m.succeed("reserve", `1`)
	if _, err := m.signal("approval", "s", `{"ok":true}`, ""); err != nil {
		t.Fatal(err)
	}
	m.succeed("capture", `{"paid":1}`)
	if m.s.PastPivot() != "capture" {
		t.Fatal("not past the pivot")
	}
	// ship's failures retry per policy, then hold the saga (its policy is
	// unwind by default, but nothing unwinds past a pivot).
	m.fail("ship", events.ErrorTransient)
	m.fire("ship", events.OpDo, machine.TimerRetry)
	m.fail("ship", events.ErrorTransient)
	if m.s.Status != machine.StatusWaiting {
		t.Fatalf("status %s", m.s.Status)
	}
	_, err := m.step(machine.Abort{Now: m.now, Reason: "no"})
	requireRejected(t, err, `past pivot "capture"`)
	m.must(machine.RetryUndo{Now: m.now, Node: "ship", Reason: "courier back"})
	m.succeed("ship", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()

	// Before the pivot succeeds, a failure unwinds as usual.
	m = newSim(t, approval(t), `{}`)
	m.succeed("reserve", `1`)
	if _, err := m.signal("approval", "s", `{"ok":true}`, ""); err != nil {
		t.Fatal(err)
	}
	m.fail("capture", events.ErrorPermanent)
	if m.s.Status != machine.StatusUnwinding {
		t.Fatal(m.s.Status)
	}
	m.undone("approval")
	m.undone("reserve")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestDeadlines(t *testing.T) {
	t.Parallel()
	for _, on := range []saga.FailurePolicy{saga.Unwind, saga.Pause} {
		t.Run(string(on), func(t *testing.T) {
			t.Parallel()
			m := newSim(t, approval(t, func(b *saga.Builder) { b.Deadline(time.Hour, on) }), `{}`)
			if tm, ok := m.timers["saga:deadline"]; !ok || !tm.At.Equal(t0.Add(time.Hour)) {
				t.Fatalf("deadline timer %+v", m.timers)
			}
			m.succeed("reserve", `1`)
			m.now = t0.Add(time.Hour)
			m.must(machine.TimerFired{Now: m.now, Timer: machine.Timer{Kind: machine.TimerDeadline}})
			switch on {
			case saga.Unwind:
				if m.s.Status != machine.StatusUnwinding || m.s.Unwinding.Reason != events.UnwindDeadline {
					t.Fatalf("status %s", m.s.Status)
				}
				m.undone("reserve")
			case saga.Pause:
				if !m.s.Paused || m.s.Status != machine.StatusRunning {
					t.Fatalf("paused %v status %s", m.s.Paused, m.s.Status)
				}
			}
			// A second firing (a redelivered timer) is stale.
			_, err := m.step(machine.TimerFired{Now: m.now, Timer: machine.Timer{Kind: machine.TimerDeadline}})
			requireRejected(t, err, "")
			m.checkReplay()
		})
	}
	// Past a pivot, a deadline pauses whatever on_deadline says.
	m := newSim(t, approval(t, func(b *saga.Builder) { b.Deadline(time.Hour, saga.Unwind) }), `{}`)
	m.succeed("reserve", `1`)
	if _, err := m.signal("approval", "s", `{}`, ""); err != nil {
		t.Fatal(err)
	}
	m.succeed("capture", `1`)
	m.must(machine.TimerFired{Now: m.now, Timer: machine.Timer{Kind: machine.TimerDeadline}})
	if !m.s.Paused || m.s.Status != machine.StatusRunning {
		t.Fatalf("paused %v status %s", m.s.Paused, m.s.Status)
	}
	// Recovery arms no deadline that has passed, and re-arms one that has not.
	d := m.must(machine.Recover{Now: m.now})
	for _, c := range d.Commands {
		if a, ok := c.(machine.ArmTimer); ok && a.Timer.Kind == machine.TimerDeadline {
			t.Fatal("a passed deadline armed again")
		}
	}
	m.checkReplay()
}

func TestIllegalEventsOfTheNewSemantics(t *testing.T) {
	t.Parallel()
	def := approval(t)
	created := &events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}
	cases := []struct {
		name string
		log  []events.Data
	}{
		{"unwinding past a pivot", []events.Data{created,
			&events.NodeStarted{Node: "reserve", Attempt: 1}, &events.NodeSucceeded{Node: "reserve", Attempt: 1},
			&events.NodeStarted{Node: "approval", Attempt: 1}, &events.NodeSucceeded{Node: "approval", Attempt: 1},
			&events.NodeStarted{Node: "capture", Attempt: 1}, &events.NodeSucceeded{Node: "capture", Attempt: 1},
			&events.SagaUnwinding{Reason: events.UnwindAborted}}},
		{"waiting on a node whose policy unwinds", []events.Data{created,
			&events.NodeStarted{Node: "reserve", Attempt: 1}, &events.NodeFailed{Node: "reserve", Attempt: 1, Error: events.Error{Kind: events.ErrorPermanent}},
			&events.SagaWaiting{Node: "reserve"}}},
		{"signal for an action", []events.Data{created, &events.SignalReceived{Node: "reserve", ID: "s"}}},
		{"two signals", []events.Data{created, &events.SignalReceived{Node: "approval", ID: "s"}, &events.SignalReceived{Node: "approval", ID: "t"}}},
		{"skip without a condition", []events.Data{created, &events.NodeSkipped{Node: "reserve"}}},
		{"operator skip of a running node", []events.Data{created, &events.NodeStarted{Node: "reserve", Attempt: 1},
			&events.OperatorSkip{Node: "reserve", Output: json.RawMessage(`1`), Reason: "x"}}},
		{"deadline without one", []events.Data{created, &events.DeadlinePassed{Then: saga.Unwind}}},
		{"rejected action", []events.Data{created, &events.NodeStarted{Node: "reserve", Attempt: 1},
			&events.NodeFailed{Node: "reserve", Attempt: 1, Error: events.Error{Kind: events.ErrorRejected}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var evs []events.Event
			for i, d := range c.log {
				evs = append(evs, logEvent(i, d))
			}
			if _, err := machine.Fold(sagaID, evs); !errors.Is(err, machine.ErrIllegal) {
				t.Fatalf("Fold: %v, want an illegal event", err)
			}
		})
	}
}

// Abort wins over pause: the saga is resumed and unwinds at once.
func TestAbortOfAPausedSagaResumesIt(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	m.must(machine.Pause{Now: m.now, Operator: "ann", Reason: "look"})
	m.succeed("b", `1`)
	if m.s.Status != machine.StatusSucceeded {
		// b's success finished the saga (nothing left to start): pause
		// does not stop that. Start again with a node still to run.
		t.Fatalf("status %s", m.s.Status)
	}
	m = newSim(t, chain("a", "b", "c"), `{}`)
	m.succeed("a", `1`)
	m.must(machine.Pause{Now: m.now, Operator: "ann", Reason: "look"})
	m.succeed("b", `1`)
	m.must(machine.Abort{Now: m.now, Operator: "ann", Reason: "give up"})
	if m.s.Paused || m.s.Status != machine.StatusUnwinding {
		t.Fatalf("paused %v, status %s", m.s.Paused, m.s.Status)
	}
	m.undone("b")
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}
