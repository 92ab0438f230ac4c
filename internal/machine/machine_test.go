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

func chain(names ...string) *saga.Definition {
	b := saga.New("chain")
	for _, n := range names {
		b.Then(saga.Action(n, "svc."+n).Undo("svc." + n + "_undo").Retry(saga.RetryPolicy{MaxAttempts: 3, InitialDelay: saga.Duration(time.Second)}))
	}
	return b.MustBuild()
}

func TestHappyPathChain(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b", "c"), `{"x":1}`)
	r := m.req("a", events.OpDo)
	if r.Action != "svc.a" || string(r.Request.Params) != `{"x":1}` || r.Request.IdempotencyKey != sagaID+":a" {
		t.Fatalf("request = %+v", r)
	}
	m.succeed("a", `{"a":1}`)
	if got := m.req("b", events.OpDo).Request.Outputs; !reflect.DeepEqual(got, map[string]json.RawMessage{"a": json.RawMessage(`{"a":1}`)}) {
		t.Fatalf("b sees outputs %s", got)
	}
	m.succeed("b", `2`)
	m.succeed("c", `"done"`)
	if m.s.Status != machine.StatusSucceeded || string(m.s.Output) != `"done"` {
		t.Fatalf("status %s output %s", m.s.Status, m.s.Output)
	}
	want := []string{"saga.created", "node.started a", "node.succeeded a", "node.started b", "node.succeeded b",
		"node.started c", "node.succeeded c", "saga.finished"}
	if got := m.types(); !reflect.DeepEqual(got, want) {
		t.Fatalf("log:\n got %v\nwant %v", got, want)
	}
	// Write-ahead: each decision's started event is in the same batch as the
	// success that made it ready, and the request is only a command.
	if len(m.log) != 4 {
		t.Fatalf("%d log messages, want 4 (one per decision)", len(m.log))
	}
	m.checkReplay()
}

func TestParallelNodesStartTogether(t *testing.T) {
	t.Parallel()
	def := saga.New("p").
		Then(saga.Action("root", "svc.root")).
		Parallel(saga.Action("a", "svc.a"), saga.Action("b", "svc.b"), saga.Action("c", "svc.c")).
		Then(saga.Action("join", "svc.join")).MustBuild()
	m := newSim(t, def, `null`)
	d := m.succeed("root", `1`)
	var sent []string
	for _, c := range d.Commands {
		if s, ok := c.(machine.SendRequest); ok {
			sent = append(sent, s.Request.Node)
		}
	}
	if !reflect.DeepEqual(sent, []string{"a", "b", "c"}) {
		t.Fatalf("sent %v", sent)
	}
	m.succeed("b", `1`)
	m.succeed("a", `1`)
	if m.state("join") != machine.NodePending {
		t.Fatal("join started before all its parents succeeded")
	}
	m.succeed("c", `1`)
	m.succeed("join", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestUnwindAtEachNodeOfAChain(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c", "d"}
	for k := range names {
		t.Run(names[k], func(t *testing.T) {
			t.Parallel()
			m := newSim(t, chain(names...), `{}`)
			for _, n := range names[:k] {
				m.succeed(n, `1`)
			}
			m.fail(names[k], events.ErrorPermanent)
			for i := k - 1; i >= 0; i-- {
				// Only the latest not-yet-undone node has a pending undo.
				for _, r := range m.pending {
					if r.Request.Op == events.OpUndo && r.Request.Node != names[i] {
						t.Fatalf("undo of %s requested before %s was undone", r.Request.Node, names[i])
					}
				}
				m.undone(names[i])
			}
			if m.s.Status != machine.StatusUnwound {
				t.Fatalf("status %s", m.s.Status)
			}
			if m.state(names[k]) != machine.NodeFailed {
				t.Fatalf("failed node is %s", m.state(names[k]))
			}
			for _, e := range m.flat() {
				if u, ok := e.Data.(*events.UndoStarted); ok && u.Node == names[k] {
					t.Fatal("the failed node was undone")
				}
			}
			m.checkReplay()
		})
	}
}

func TestInFlightNodeFinishesThenIsUndone(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Parallel(saga.Action("a", "svc.a").Undo("svc.ua"), saga.Action("b", "svc.b").Undo("svc.ub")).MustBuild()
	m := newSim(t, def, `{}`)
	m.fail("a", events.ErrorPermanent)
	if m.s.Status != machine.StatusUnwinding || m.state("b") != machine.NodeStarted {
		t.Fatalf("status %s, b %s", m.s.Status, m.state("b"))
	}
	m.succeed("b", `1`)
	if m.state("b") != machine.NodeUndoStarted {
		t.Fatalf("b is %s, want undo_started", m.state("b"))
	}
	m.undone("b")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

// steno#17: failures in parallel branches at once unwind once, and the node
// before them is undone only after both branches settle.
func TestConcurrentFailuresInParallelBranches(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Then(saga.Action("x", "svc.x").Undo("svc.ux")).
		Parallel(saga.Action("a", "svc.a").Undo("svc.ua"), saga.Action("b", "svc.b").Undo("svc.ub")).MustBuild()
	m := newSim(t, def, `{}`)
	m.succeed("x", `1`)
	m.fail("a", events.ErrorPermanent)
	if m.state("x") != machine.NodeSucceeded {
		t.Fatal("x undone while b was in flight")
	}
	m.fail("b", events.ErrorPermanent)
	m.undone("x")
	unwinding := 0
	for _, e := range m.flat() {
		if _, ok := e.Data.(*events.SagaUnwinding); ok {
			unwinding++
		}
	}
	if unwinding != 1 || m.s.Status != machine.StatusUnwound || m.s.Unwinding.Node != "a" {
		t.Fatalf("unwinding events %d, status %s, cause %+v", unwinding, m.s.Status, m.s.Unwinding)
	}
	m.checkReplay()
}

// steno#462: a join node whose other parent failed while one parent is
// already undone — the join never ran, so it does not hold up the undo.
func TestJoinWhoseOtherParentFailed(t *testing.T) {
	t.Parallel()
	def := saga.New("j").
		Parallel(saga.Action("a", "svc.a").Undo("svc.ua"), saga.Action("b", "svc.b").Undo("svc.ub")).
		Then(saga.Action("join", "svc.join").Undo("svc.ujoin")).MustBuild()
	for _, order := range []string{"a-first", "b-first"} {
		t.Run(order, func(t *testing.T) {
			t.Parallel()
			m := newSim(t, def, `{}`)
			if order == "a-first" {
				m.succeed("a", `1`)
				m.fail("b", events.ErrorPermanent)
			} else {
				m.fail("b", events.ErrorPermanent)
				m.succeed("a", `1`)
			}
			m.undone("a")
			if m.s.Status != machine.StatusUnwound || m.state("join") != machine.NodePending {
				t.Fatalf("status %s join %s", m.s.Status, m.state("join"))
			}
			m.checkReplay()
		})
	}
}

func TestRetriesWithBackoffThenSuccess(t *testing.T) {
	t.Parallel()
	def := saga.New("r").Then(saga.Action("a", "svc.a").
		Retry(saga.RetryPolicy{MaxAttempts: 3, InitialDelay: saga.Duration(time.Second), MaxDelay: saga.Duration(10 * time.Second)})).MustBuild()
	m := newSim(t, def, `{}`)
	d := m.fail("a", events.ErrorTransient)
	var armed *machine.ArmTimer
	for _, c := range d.Commands {
		if a, ok := c.(machine.ArmTimer); ok {
			armed = &a
		}
	}
	if armed == nil || armed.Timer.Kind != machine.TimerRetry || armed.At.Before(t0.Add(800*time.Millisecond)) || armed.At.After(t0.Add(time.Second)) {
		t.Fatalf("retry timer %+v, want within jitter of 1s", armed)
	}
	m.fire("a", events.OpDo, machine.TimerRetry)
	if r := m.req("a", events.OpDo); r.Request.Attempt != 2 || r.Request.IdempotencyKey != sagaID+":a" {
		t.Fatalf("retry request %+v", r.Request)
	}
	m.succeed("a", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a"), `{}`)
	r := m.req("a", events.OpDo)
	delete(m.pending, r.ID)
	rep := replyTo(r, false, "", &events.Error{Kind: events.ErrorTransient, Message: "busy"})
	rep.RetryAfter = saga.Duration(time.Minute)
	d := m.must(machine.Reply{Now: m.now, Reply: rep})
	af := d.Events[0].Data.(*events.NodeAttemptFailed)
	if !af.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("retry at %s", af.RetryAt)
	}
}

func TestRetriesExhaustedUnwindsWithoutUndo(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	for i := 0; i < 2; i++ {
		m.fail("b", events.ErrorTransient)
		m.fire("b", events.OpDo, machine.TimerRetry)
	}
	m.fail("b", events.ErrorTransient)
	_, n, _ := m.s.Node("b")
	if n.State != machine.NodeFailed || n.Error.Kind != events.ErrorRetriesExhausted {
		t.Fatalf("b = %+v", n)
	}
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestTimeoutsLeadToOutcomeUnknownAndUndo(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	m.fire("b", events.OpDo, machine.TimerTimeout)
	m.fire("b", events.OpDo, machine.TimerRetry)
	m.fire("b", events.OpDo, machine.TimerTimeout)
	m.fire("b", events.OpDo, machine.TimerRetry)
	m.fire("b", events.OpDo, machine.TimerTimeout)
	_, n, _ := m.s.Node("b")
	// b's outcome is unknown, so b is undone too, before a.
	if n.State != machine.NodeUndoStarted || !n.OutcomeUnknown || n.Error.Kind != events.ErrorOutcomeUnknown {
		t.Fatalf("b = %+v", n)
	}
	if string(m.req("b", events.OpUndo).Request.Output) != "null" {
		t.Fatal("undo request of an unknown outcome should carry output null")
	}
	m.undone("b")
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestLateSuccessOfEarlierAttemptCounts(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a"), `{}`)
	first := m.req("a", events.OpDo)
	m.fire("a", events.OpDo, machine.TimerTimeout)
	m.fire("a", events.OpDo, machine.TimerRetry)
	m.must(machine.Reply{Now: m.now, Reply: replyTo(first, true, `"late"`, nil)})
	if m.s.Status != machine.StatusSucceeded || string(m.s.Output) != `"late"` {
		t.Fatalf("status %s output %s", m.s.Status, m.s.Output)
	}
	m.checkReplay()
}

func TestUndoFailureIsStuckThenRetryOrResolveOrAbandon(t *testing.T) {
	t.Parallel()
	for _, fix := range []string{"retry", "resolve", "abandon"} {
		t.Run(fix, func(t *testing.T) {
			t.Parallel()
			m := newSim(t, chain("a", "b", "c"), `{}`)
			m.succeed("a", `1`)
			m.succeed("b", `1`)
			m.fail("c", events.ErrorPermanent)
			m.undoFail("b", events.ErrorPermanent)
			if m.s.Status != machine.StatusStuck || m.state("b") != machine.NodeUndoFailed || m.state("a") != machine.NodeSucceeded {
				t.Fatalf("status %s b %s a %s", m.s.Status, m.state("b"), m.state("a"))
			}
			if _, err := m.step(machine.Abort{Now: m.now}); err == nil {
				t.Fatal("abort of a stuck saga accepted")
			}
			if _, err := m.step(machine.Resolve{Now: m.now, Node: "a", Reason: "x"}); err == nil {
				t.Fatal("resolve of a node whose undo did not fail accepted")
			}
			switch fix {
			case "retry":
				m.must(machine.RetryUndo{Now: m.now, Node: "b", Operator: "ops"})
				if m.s.Status != machine.StatusUnwinding {
					t.Fatal(m.s.Status)
				}
				// A new round, but a new attempt number: the request must
				// not share an id (and so a dedupe) with the failed one.
				if r := m.req("b", events.OpUndo); r.Request.Attempt != 2 || r.ID != events.RequestID(sagaID, "b", events.OpUndo, 2) {
					t.Fatalf("retried undo request %s attempt %d", r.ID, r.Request.Attempt)
				}
				m.undone("b")
				m.undone("a")
				if m.s.Status != machine.StatusUnwound {
					t.Fatal(m.s.Status)
				}
			case "resolve":
				if _, err := m.step(machine.Resolve{Now: m.now, Node: "b"}); err == nil {
					t.Fatal("resolve without a reason accepted")
				}
				m.must(machine.Resolve{Now: m.now, Node: "b", Reason: "refunded by hand"})
				m.undone("a")
				_, b, _ := m.s.Node("b")
				if m.s.Status != machine.StatusUnwound || b.Resolved != "refunded by hand" {
					t.Fatalf("status %s b %+v", m.s.Status, b)
				}
			case "abandon":
				m.must(machine.Abandon{Now: m.now, Reason: "test"})
				if m.s.Status != machine.StatusAbandoned {
					t.Fatal(m.s.Status)
				}
			}
			m.checkReplay()
		})
	}
}

func TestUndoRetriesExhaustedIsStuck(t *testing.T) {
	t.Parallel()
	def := saga.New("u").Then(saga.Action("a", "svc.a").Undo("svc.ua").UndoRetry(saga.RetryPolicy{MaxAttempts: 2})).
		Then(saga.Action("b", "svc.b")).MustBuild()
	m := newSim(t, def, `{}`)
	m.succeed("a", `1`)
	m.fail("b", events.ErrorPermanent)
	m.undoFail("a", events.ErrorTransient)
	m.fire("a", events.OpUndo, machine.TimerRetry)
	m.fire("a", events.OpUndo, machine.TimerTimeout)
	_, n, _ := m.s.Node("a")
	if m.s.Status != machine.StatusStuck || n.Error.Kind != events.ErrorRetriesExhausted {
		t.Fatalf("status %s a %+v", m.s.Status, n)
	}
	m.checkReplay()
}

func TestAbortUnwindsARunningSaga(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	m.must(machine.Abort{Now: m.now, Operator: "ops", Reason: "customer cancelled"})
	if m.s.Status != machine.StatusUnwinding || m.s.Unwinding.Reason != events.UnwindAborted {
		t.Fatal(m.s.Status)
	}
	m.succeed("b", `1`) // in flight: finishes, then is undone
	m.undone("b")
	m.undone("a")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestAbortCancelsNodesWaitingToRetry(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a"), `{}`)
	m.fail("a", events.ErrorTransient)
	m.must(machine.Abort{Now: m.now})
	_, n, _ := m.s.Node("a")
	if n.State != machine.NodeFailed || n.Error.Kind != events.ErrorCanceled || m.s.Status != machine.StatusUnwound {
		t.Fatalf("a %+v status %s", n, m.s.Status)
	}
	if _, err := m.step(machine.TimerFired{Now: m.now, Timer: machine.Timer{Kind: machine.TimerRetry, Op: events.OpDo, Node: "a", Attempt: 1}}); err == nil {
		t.Fatal("retry timer of a canceled node accepted")
	}
	m.checkReplay()
}

func TestSubsagaParamsOutputsAndScopes(t *testing.T) {
	t.Parallel()
	inner := saga.New("inner").
		Then(saga.Action("create", "vm.create").Undo("vm.delete")).
		Then(saga.Action("boot", "vm.boot")).MustBuild()
	def := saga.New("outer").
		Then(saga.Constant("cfg", map[string]int{"cpus": 2})).
		Then(saga.Action("ip", "net.ip").Undo("net.release")).
		Then(saga.Subsaga("vm", inner, "cfg")).
		Then(saga.Action("dns", "net.dns").Reads("vm", "ip")).MustBuild()
	m := newSim(t, def, `{"outer":true}`)
	if string(m.req("ip", events.OpDo).Request.Params) != `{"outer":true}` {
		t.Fatal("top-level params")
	}
	if got := m.req("ip", events.OpDo).Request.Outputs; string(got["cfg"]) != `{"cpus":2}` {
		t.Fatalf("ip sees %s", got)
	}
	m.succeed("ip", `"10.0.0.1"`)
	create := m.req("vm/create", events.OpDo)
	if string(create.Request.Params) != `{"cpus":2}` || len(create.Request.Outputs) != 0 {
		t.Fatalf("inner node params %s outputs %s", create.Request.Params, create.Request.Outputs)
	}
	m.succeed("vm/create", `{"id":"vm1"}`)
	if got := m.req("vm/boot", events.OpDo).Request.Outputs; !reflect.DeepEqual(keys(got), []string{"create"}) {
		t.Fatalf("boot sees %v: the outer scope must be invisible", keys(got))
	}
	m.succeed("vm/boot", `{"booted":"vm1"}`)
	dns := m.req("dns", events.OpDo).Request.Outputs
	if string(dns["vm"]) != `{"booted":"vm1"}` || string(dns["ip"]) != `"10.0.0.1"` || len(dns) != 2 {
		t.Fatalf("dns sees %s", dns)
	}
	m.fail("dns", events.ErrorPermanent)
	m.undone("vm/create")
	m.undone("ip")
	if m.s.Status != machine.StatusUnwound {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestRecoverReissuesOutstandingWork(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Parallel(
		saga.Action("a", "svc.a").Undo("svc.ua"),
		saga.Action("b", "svc.b").Undo("svc.ub"),
		saga.Action("c", "svc.c").Undo("svc.uc"),
	).MustBuild()
	m := newSim(t, def, `{}`)
	m.fail("b", events.ErrorTransient) // b waits to retry
	// Crash: a fresh coordinator folds the log.
	s, err := machine.Fold(sagaID, m.flat())
	if err != nil {
		t.Fatal(err)
	}
	d, err := machine.Decide(s, machine.Recover{Now: m.now}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Events) != 0 {
		t.Fatalf("recovery appended %d events", len(d.Events))
	}
	var got []string
	for _, c := range d.Commands {
		switch c := c.(type) {
		case machine.SendRequest:
			got = append(got, "send "+c.Request.Node)
		case machine.ArmTimer:
			got = append(got, "arm "+c.Timer.ID())
		}
	}
	want := []string{"send a", "arm a:do:timeout:1", "arm b:do:retry:1", "send c", "arm c:do:timeout:1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recovery commands\n got %v\nwant %v", got, want)
	}

	// Undo-started nodes are re-requested too.
	m.fire("b", events.OpDo, machine.TimerRetry)
	m.fail("a", events.ErrorPermanent)
	m.succeed("b", `1`)
	s, _ = machine.Fold(sagaID, m.flat())
	d, _ = machine.Decide(s, machine.Recover{Now: m.now}, machine.Options{})
	var undos []string
	for _, c := range d.Commands {
		if r, ok := c.(machine.SendRequest); ok {
			undos = append(undos, string(r.Request.Op)+" "+r.Request.Node)
		}
	}
	if !reflect.DeepEqual(undos, []string{"undo b", "do c"}) {
		t.Fatalf("recovery sends %v", undos)
	}
}

func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Parallel(saga.Action("a", "s.a"), saga.Action("b", "s.b"), saga.Action("c", "s.c")).MustBuild()
	m := emptySim(t)
	m.opt = machine.Options{MaxInFlight: 2}
	m.must(machine.Start{Now: m.now, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}})
	if len(m.pending) != 2 {
		t.Fatalf("%d requests in flight, want 2", len(m.pending))
	}
	m.succeed("a", `1`)
	m.succeed("b", `1`)
	m.succeed("c", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
	m.checkReplay()
}

func TestStaleDuplicateForgedRepliesAreRejected(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	ra := m.req("a", events.OpDo)
	m.succeed("a", `1`)
	before := m.s.Clone()
	rb := m.req("b", events.OpDo)
	cases := map[string]events.ActionReply{
		"duplicate": replyTo(ra, true, `1`, nil),
		"forged id": func() events.ActionReply { r := replyTo(rb, true, `1`, nil); r.RequestID = "x"; return r }(),
		"future": func() events.ActionReply {
			r := replyTo(rb, true, `1`, nil)
			r.Attempt = 2
			r.RequestID = events.RequestID(sagaID, "b", events.OpDo, 2)
			return r
		}(),
		"unknown node": func() events.ActionReply { r := replyTo(rb, true, `1`, nil); r.Node = "zz"; return r }(),
		"undo for do": func() events.ActionReply {
			r := replyTo(rb, true, `1`, nil)
			r.Op = events.OpUndo
			r.RequestID = events.RequestID(sagaID, "b", events.OpUndo, 1)
			return r
		}(),
		"stale failure": replyTo(ra, false, "", &events.Error{Kind: events.ErrorPermanent}),
	}
	for name, r := range cases {
		_, err := m.step(machine.Reply{Now: m.now, Reply: r})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		requireRejected(t, err, "")
	}
	if !reflect.DeepEqual(before, m.s) {
		t.Fatal("rejected replies changed the state")
	}
	m.succeed("b", `1`)
	_, err := m.step(machine.Reply{Now: m.now, Reply: replyTo(rb, true, `1`, nil)})
	requireRejected(t, err, "the saga has finished")
}

func TestIllegalEventsAreRejectedAndChangeNothing(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	next := len(m.flat())
	ev := func(n int, d events.Data) events.Event {
		return events.Event{ID: events.LogEventID(sagaID, n), Source: "/t", SagaID: sagaID, Time: t0, Data: d}
	}
	cases := []struct {
		name string
		e    events.Event
		want string
	}{
		{"created twice", ev(next, &events.SagaCreated{Definition: chain("a"), Params: json.RawMessage(`1`)}), "already exists"},
		{"unknown node", ev(next, &events.NodeStarted{Node: "ghost", Attempt: 1}), `names unknown node "ghost" (saga running): the saga has no node "ghost"`},
		{"succeed pending", ev(next, &events.NodeSucceeded{Node: "zzz", Attempt: 1}), "no node"},
		{"restart succeeded", ev(next, &events.NodeStarted{Node: "a", Attempt: 1}), `node "a" in state succeeded`},
		{"undo while running", ev(next, &events.UndoStarted{Node: "a", Attempt: 1}), "undos run only while the saga unwinds"},
		{"duplicate id", ev(next-1, &events.NodeSucceeded{Node: "b", Attempt: 1}), "duplicate, missing or reordered"},
		{"gap", ev(next+1, &events.NodeSucceeded{Node: "b", Attempt: 1}), "duplicate, missing or reordered"},
		{"other saga", events.Event{ID: "x", SagaID: "other", Data: &events.NodeSucceeded{Node: "b", Attempt: 1}}, "is for saga other"},
		{"success of later attempt", ev(next, &events.NodeSucceeded{Node: "b", Attempt: 2}), "not attempt 2"},
		{"finish early", ev(next, &events.SagaFinished{Outcome: events.OutcomeSucceeded}), `node "b" has not succeeded`},
		{"abandon without operator", ev(next, &events.SagaFinished{Outcome: events.OutcomeAbandoned}), "only by an operator"},
		{"stuck without failed undo", ev(next, &events.SagaStuckV1{Node: "a"}), "only on a failed undo"},
		{"stuck while running", ev(next, &events.SagaStuck{Undos: []events.FailedUndo{{Node: "a"}}}), "only an unwinding saga becomes stuck"},
		{"request in log", ev(next, &events.ActionRequest{}), "not a saga log event"},
	}
	for _, c := range cases {
		before := m.s.Clone()
		err := m.s.Apply(c.e)
		var ie *machine.IllegalEventError
		if !errors.As(err, &ie) || !errors.Is(err, machine.ErrIllegal) {
			t.Errorf("%s: err = %v", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "saga "+sagaID) {
			t.Errorf("%s: error %q lacks %q", c.name, err, c.want)
		}
		if !reflect.DeepEqual(before, m.s) {
			t.Errorf("%s: state changed", c.name)
		}
	}
	// A batch applies whole or not at all.
	before := m.s.Clone()
	err := m.s.ApplyAll([]events.Event{ev(next, &events.NodeSucceeded{Node: "b", Attempt: 1}), ev(next+1, &events.NodeStarted{Node: "a", Attempt: 1})})
	if err == nil || !reflect.DeepEqual(before, m.s) {
		t.Fatalf("half-applied batch: err %v", err)
	}
	// Undo order is enforced on replay, not only by the decider.
	m2 := newSim(t, chain("a", "b", "c"), `{}`)
	m2.succeed("a", `1`)
	m2.succeed("b", `1`)
	m2.fail("c", events.ErrorPermanent)
	n := len(m2.flat())
	err = m2.s.Apply(ev(n, &events.UndoStarted{Node: "a", Attempt: 1}))
	if err == nil || !strings.Contains(err.Error(), "after all its descendants are undone") {
		t.Fatalf("undo before descendants: %v", err)
	}
	if _, err := machine.Fold(sagaID, []events.Event{ev(0, &events.NodeStarted{Node: "a", Attempt: 1})}); err == nil || !strings.Contains(err.Error(), "first event") {
		t.Fatalf("log without created: %v", err)
	}
}

func TestInputsForMissingOrFinishedSagas(t *testing.T) {
	t.Parallel()
	_, err := machine.Decide(machine.New(sagaID), machine.Recover{Now: t0}, machine.Options{})
	requireRejected(t, err, "does not exist")
	m := newSim(t, chain("a"), `{}`)
	_, err = m.step(machine.Start{Now: t0, Created: events.SagaCreated{Definition: chain("a")}})
	requireRejected(t, err, "already exists")
	_, err = machine.Decide(machine.New(sagaID), machine.Start{Now: t0, Created: events.SagaCreated{Definition: &saga.Definition{Name: "x"}}}, machine.Options{})
	if !errors.Is(err, saga.ErrInvalid) {
		t.Fatalf("start with invalid definition: %v", err)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestAdmitThrottlesAndAdvanceResumes(t *testing.T) {
	t.Parallel()
	def := saga.New("p").Parallel(saga.Action("a", "s.a"), saga.Action("b", "s.b")).MustBuild()
	m := emptySim(t)
	m.opt = machine.Options{Limited: true, Room: 1, Source: "/jetsaga/coordinator/test"}
	d := m.must(machine.Start{Now: t0, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}})
	if !d.Throttled || d.Admitted != 1 || len(m.pending) != 1 || d.Events[0].Source != "/jetsaga/coordinator/test" {
		t.Fatalf("throttled %v, admitted %d, %d pending, source %q", d.Throttled, d.Admitted, len(m.pending), d.Events[0].Source)
	}
	m.opt.Room = 0
	d = m.must(machine.Advance{Now: t0})
	if !d.Throttled || d.Admitted != 0 || len(d.Events) != 0 {
		t.Fatalf("advance without room: throttled %v, admitted %d, %d events", d.Throttled, d.Admitted, len(d.Events))
	}
	m.opt.Room = 5
	d = m.must(machine.Advance{Now: t0})
	if d.Throttled || d.Admitted != 1 || len(m.pending) != 2 {
		t.Fatalf("advance with room: throttled %v, admitted %d, %d pending", d.Throttled, d.Admitted, len(m.pending))
	}
	m.succeed("a", `1`)
	m.succeed("b", `1`)
	if m.s.Status != machine.StatusSucceeded {
		t.Fatal(m.s.Status)
	}
}

// The backoff restarts with each round of attempts: an operator's retry of
// a failed undo waits the policy's first delay, not one grown from the
// attempt number; injected repeats do not grow it either (issue 11, §6).
func TestBackoffRestartsWithEachRound(t *testing.T) {
	t.Parallel()
	policy := saga.RetryPolicy{MaxAttempts: 3, InitialDelay: saga.Duration(time.Second), Multiplier: 2}
	def := saga.New("b").Then(saga.Action("a", "svc.a").Undo("svc.ua").Retry(policy).UndoRetry(policy)).
		Then(saga.Action("b", "svc.b")).MustBuild()
	retryIn := func(m *sim, node string, op events.Op) time.Duration {
		t.Helper()
		_, n, _ := m.s.Node(node)
		if op == events.OpUndo {
			return n.UndoRetryAt.Sub(m.now)
		}
		return n.RetryAt.Sub(m.now)
	}

	m := newSim(t, def, `{}`)
	m.succeed("a", `1`)
	m.fail("b", events.ErrorPermanent)
	for i, want := range []time.Duration{time.Second, 2 * time.Second} {
		m.undoFail("a", events.ErrorTransient)
		if got := retryIn(m, "a", events.OpUndo); got != want {
			t.Fatalf("round 1, try %d: retry in %s, want %s", i+1, got, want)
		}
		m.fire("a", events.OpUndo, machine.TimerRetry)
	}
	m.undoFail("a", events.ErrorTransient)
	if m.s.Status != machine.StatusStuck {
		t.Fatal(m.s.Status)
	}
	m.must(machine.RetryUndo{Now: m.now, Node: "a", Operator: "ops"})
	m.undoFail("a", events.ErrorTransient) // attempt 4, the new round's first try
	if got := retryIn(m, "a", events.OpUndo); got != time.Second {
		t.Fatalf("round 2, try 1: retry in %s, want 1s", got)
	}
	m.checkReplay()

	// An injected repeat is not a try.
	m = newSimWithFaults(t, def, events.Fault{Node: "a", Repeat: 2})
	m.succeed("a", `1`)
	m.fail("a", events.ErrorTransient) // attempt 2: the repeat's first try
	if got := retryIn(m, "a", events.OpDo); got != time.Second {
		t.Fatalf("after a repeat: retry in %s, want 1s", got)
	}
	m.checkReplay()
}

// A start of a saga that exists is rejected; with another definition or
// params the rejection says it is an idempotency conflict.
func TestStartOfAnExistingSaga(t *testing.T) {
	t.Parallel()
	m := newSim(t, chain("a"), `{"x":1}`)
	start := func(def *saga.Definition, params string) error {
		_, err := m.step(machine.Start{Now: m.now, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(params)}})
		return err
	}
	if err := start(chain("a"), `{ "x": 1 }`); !errors.Is(err, machine.ErrRejected) || errors.Is(err, machine.ErrIdempotencyConflict) {
		t.Fatalf("same request: %v", err)
	}
	for _, c := range []struct {
		def    *saga.Definition
		params string
		want   string
	}{
		{chain("a"), `{"x":2}`, "a different params"},
		{chain("b"), `{"x":1}`, "a different definition"},
		{chain("b"), `{"x":2}`, "a different definition and params"},
	} {
		err := start(c.def, c.params)
		if !errors.Is(err, machine.ErrRejected) || !errors.Is(err, machine.ErrIdempotencyConflict) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.want, err)
		}
	}
}

// Every operator action maps to its own input; one not known is an error,
// never another action (issue 12, §2).
func TestOperatorInput(t *testing.T) {
	t.Parallel()
	f := events.Fault{Node: "a", FailUndo: true}
	for action, want := range map[events.OperatorAction]machine.Input{
		events.ActionAbort:   machine.Abort{Now: t0, Operator: "o", Reason: "r"},
		events.ActionRetry:   machine.RetryUndo{Now: t0, Node: "a", Operator: "o", Reason: "r"},
		events.ActionResolve: machine.Resolve{Now: t0, Node: "a", Operator: "o", Reason: "r"},
		events.ActionAbandon: machine.Abandon{Now: t0, Operator: "o", Reason: "r"},
		events.ActionPause:   machine.Pause{Now: t0, Operator: "o", Reason: "r"},
		events.ActionResume:  machine.Resume{Now: t0, Operator: "o", Reason: "r"},
		events.ActionFault:   machine.InjectFault{Now: t0, Fault: f, Operator: "o", Reason: "r"},
	} {
		cmd := events.OperatorCommand{Action: action, Operator: "o", Reason: "r", Fault: &f}
		if action == events.ActionRetry || action == events.ActionResolve {
			cmd.Node = "a"
		}
		got, err := machine.OperatorInput(t0, cmd)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %#v, %v; want %#v", action, got, err, want)
		}
	}
	if in, err := machine.OperatorInput(t0, events.OperatorCommand{Action: "explode"}); err == nil || in != nil {
		t.Errorf("unknown action: %v, %v", in, err)
	}
	if _, err := machine.OperatorInput(t0, events.OperatorCommand{Action: events.ActionFault}); err == nil {
		t.Error("a fault command without a fault was accepted")
	}
}
