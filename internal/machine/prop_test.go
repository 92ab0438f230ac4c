package machine_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

// The property test runs random sagas (random DAGs with parallel stages,
// explicit dependencies and subsagas) against a simulated world: idempotent
// participants with a ledger of effects, random failures and timeouts,
// replies delivered in random order and more than once, and crashes of the
// coordinator at random points (fold the log, recover). At the end it checks
// the saga against a small reference model written independently of the
// machine: the outcome, the order of events in the log, and the ledger.
//
// It runs 1,000 cases by default; RAPID_CHECKS=N or -rapid.checks=N for more.
func TestPropertyRandomSagas(t *testing.T) {
	setDefaultChecks(1000)
	rapid.Check(t, func(rt *rapid.T) {
		w := newWorld(rt)
		w.run()
		w.check()
	})
	t.Logf("outcomes %v; %d runs went stuck, %d crashes, %d subsagas, %d injected repeats, %d injected failures (%d after a timeout), %d faults injected mid-run, %d early timeouts, %d pauses",
		stats.outcomes, stats.stuck, stats.crashes, stats.subsagas, stats.repeats, stats.injected, stats.injectedAfterTimeout, stats.midRunFaults, stats.earlyTimeouts, stats.pauses)
	t.Logf("skipped nodes %d, condition errors %d, signals taken %d (early %d, rejecting %d, duplicates refused %d), await timeouts %d, waits %d (retried %d, skipped %d, aborted %d), pivots passed %d, deadlines passed %d",
		stats.skipped, stats.conditionErrors, stats.signals, stats.earlySignals, stats.rejections, stats.duplicates, stats.awaitTimeouts,
		stats.waits, stats.opRetries, stats.opSkips, stats.opAborts, stats.pivots, stats.deadlines)
	// The generator must reach every interesting path, or the test proves
	// less than it claims.
	if stats.outcomes[machine.StatusSucceeded] == 0 || stats.outcomes[machine.StatusUnwound] == 0 || stats.stuck == 0 || stats.crashes == 0 || stats.subsagas == 0 ||
		stats.repeats == 0 || stats.injected == 0 || stats.pauses == 0 || stats.injectedAfterTimeout == 0 || stats.midRunFaults == 0 || stats.earlyTimeouts == 0 {
		t.Errorf("the generator missed a path: %+v", stats)
	}
	if stats.skipped == 0 || stats.conditionErrors == 0 || stats.signals == 0 || stats.earlySignals == 0 || stats.rejections == 0 || stats.duplicates == 0 ||
		stats.awaitTimeouts == 0 || stats.waits == 0 || stats.opRetries == 0 || stats.opSkips == 0 || stats.opAborts == 0 || stats.pivots == 0 || stats.deadlines == 0 {
		t.Errorf("the generator missed a path of waits, conditions, pivots or deadlines: %+v", stats)
	}
}

var stats = struct {
	outcomes                 map[machine.Status]int
	stuck, crashes, subsagas int
	repeats, injected        int // runs repeated and actions failed by injected faults
	// injectedAfterTimeout: actions failed by an injected fault after an
	// earlier attempt timed out (their outcome is unknown).
	injectedAfterTimeout int
	midRunFaults         int // faults injected while the saga ran
	earlyTimeouts        int // attempts timed out while their reply was on its way
	pauses               int
	// waits, conditions, pivots and deadlines
	skipped, conditionErrors                           int
	signals, earlySignals, rejections, duplicates      int
	awaitTimeouts, waits, opRetries, opSkips, opAborts int
	pivots, deadlines                                  int
}{outcomes: map[machine.Status]int{}}

// Conditions the generator puts on nodes: with params {"p":1}, one is
// true, one false, one fails to evaluate.
const (
	whenTrue  = `params.p == 1`
	whenFalse = `params.p == 2`
	whenError = `params.q > 0`
)

func setDefaultChecks(n int) {
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", fmt.Sprint(n))
	}
}

// attempt outcomes a participant can have
type outcome int

const (
	ok outcome = iota
	transient
	permanent
	timeoutNoEffect
	timeoutEffect
)

type plan struct {
	// await: the node waits for a signal; reject says the world's signal
	// rejects it.
	await, reject bool
	// retried: an operator retried the node; every later attempt succeeds.
	retried  bool
	attempts []outcome // per attempt of the action, 1-based at [0]
	undoFail int       // undo attempts that fail transiently first
	undoPerm bool      // the undo fails permanently (until an operator retries)
	hasUndo  bool
	fault    events.Fault // injected at the start
	// unsure: a fault injected mid-run or an attempt timed out while its
	// reply was on its way, so the plan alone no longer tells the node's fate.
	unsure bool
}

type world struct {
	t     *rapid.T
	def   *saga.Definition
	graph *saga.Graph
	plans map[string]*plan
	m     *sim

	requests []machine.SendRequest // sent, not yet taken by a participant
	replies  []events.ActionReply  // sent by participants, not yet delivered
	// participant state: the idempotency barrier and the ledger of effects
	done     map[string]json.RawMessage // node -> recorded output
	undone   map[string]bool
	ledger   map[string]bool
	retried  map[string]bool // an operator retried the node's undo
	crashes  int
	finished bool
	// signalled: the round of the latest signal sent per await node (an
	// operator's retry starts a new round).
	signalled map[string]int
}

func genDef(t *rapid.T, name string, depth int, budget *int) *saga.Definition {
	b := saga.New(name)
	var names []string
	stages := rapid.IntRange(1, 4).Draw(t, "stages")
	for s := 0; s < stages && *budget > 0; s++ {
		width := rapid.IntRange(1, 3).Draw(t, "width")
		var specs []saga.NodeSpec
		for k := 0; k < width && *budget > 0; k++ {
			*budget--
			n := fmt.Sprintf("n%d", len(names))
			var spec saga.NodeSpec
			switch kind := rapid.IntRange(0, 9).Draw(t, "kind"); {
			case kind == 0:
				spec = saga.Constant(n, len(names))
			case kind == 1 && depth < 2 && *budget > 2:
				spec = saga.Subsaga(n, genDef(t, "sub", depth+1, budget), "")
			case kind == 2:
				spec = saga.Await(n, "ev")
				if rapid.IntRange(0, 2).Draw(t, "awaitundo") > 0 {
					spec = spec.Undo("svc.undo")
				}
				if rapid.IntRange(0, 3).Draw(t, "awaittimeout") == 0 {
					spec = spec.Timeout(time.Minute)
				}
			default:
				spec = saga.Action(n, "svc.act").
					Retry(saga.RetryPolicy{MaxAttempts: rapid.IntRange(1, 3).Draw(t, "max"), InitialDelay: saga.Duration(time.Second)}).
					UndoRetry(saga.RetryPolicy{MaxAttempts: rapid.IntRange(1, 3).Draw(t, "undomax"), InitialDelay: saga.Duration(time.Second)})
				if rapid.IntRange(0, 5).Draw(t, "undo") > 0 {
					spec = spec.Undo("svc.undo")
				}
				if rapid.IntRange(0, 5).Draw(t, "pausenode") == 0 {
					spec = spec.OnFailure(saga.Pause)
				}
			}
			if rapid.IntRange(0, 5).Draw(t, "when") == 0 {
				spec = spec.When(rapid.SampledFrom([]string{whenTrue, whenTrue, whenFalse, whenFalse, whenError}).Draw(t, "expr"))
			}
			if len(names) > 0 && rapid.IntRange(0, 4).Draw(t, "explicit") == 0 {
				var deps []string
				for _, prev := range names {
					if rapid.Bool().Draw(t, "dep") {
						deps = append(deps, prev)
					}
				}
				spec = spec.After(deps...)
			}
			specs = append(specs, spec)
			names = append(names, n)
		}
		if len(specs) > 0 {
			b.Parallel(specs...)
		}
	}
	if depth == 0 {
		if rapid.IntRange(0, 7).Draw(t, "pausesaga") == 0 {
			b.OnFailure(saga.Pause)
		}
		if rapid.IntRange(0, 5).Draw(t, "deadline") == 0 {
			b.Deadline(time.Hour, rapid.SampledFrom([]saga.FailurePolicy{saga.Unwind, saga.Pause}).Draw(t, "ondeadline"))
		}
	}
	def := b.MustBuild()
	if depth == 0 && rapid.IntRange(0, 3).Draw(t, "pivot") == 0 {
		makePivot(t, def)
	}
	return def
}

// makePivot marks a random top-level action node as the saga's pivot if
// the definition allows it once the undos after it are taken off.
func makePivot(t *rapid.T, def *saga.Definition) {
	var actions []int
	for i, n := range def.Nodes {
		if n.Kind == saga.KindAction {
			actions = append(actions, i)
		}
	}
	if len(actions) == 0 {
		return
	}
	i := rapid.SampledFrom(actions).Draw(t, "pivotnode")
	try := def.Clone()
	try.Nodes[i].Pivot = true
	g, err := saga.Compile(def) // for the descendants
	if err != nil {
		t.Fatal(err)
	}
	p, _ := g.Node(def.Nodes[i].Name)
	for _, n := range g.Nodes {
		if n.Index != p.Index && descends(g, n.Index, p.Index) {
			clearUndo(try, n.Path)
		}
	}
	if saga.Validate(try) == nil {
		*def = *try
	}
}

// descends reports whether node i depends, directly or not, on node a.
func descends(g *saga.Graph, i, a int) bool {
	for _, p := range g.Nodes[i].Parents {
		if p == a || descends(g, p, a) {
			return true
		}
	}
	return false
}

// clearUndo takes the undo off the node at path in def.
func clearUndo(def *saga.Definition, path string) {
	name, rest, nested := strings.Cut(path, "/")
	for k := range def.Nodes {
		if def.Nodes[k].Name != name {
			continue
		}
		if nested && def.Nodes[k].Saga != nil {
			clearUndo(def.Nodes[k].Saga, rest)
		} else if !nested {
			def.Nodes[k].Undo = ""
		}
	}
}

func newWorld(t *rapid.T) *world {
	budget := rapid.IntRange(1, 30).Draw(t, "nodes")
	def := genDef(t, "prop", 0, &budget)
	g, err := saga.Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, def: def, graph: g, plans: map[string]*plan{},
		done: map[string]json.RawMessage{}, undone: map[string]bool{}, ledger: map[string]bool{}, retried: map[string]bool{}, signalled: map[string]int{}}
	for _, n := range g.Nodes {
		if n.Kind == saga.KindSubsagaStart {
			stats.subsagas++
		}
	}
	failRate := rapid.IntRange(0, 30).Draw(t, "failrate") // percent
	for _, n := range g.Nodes {
		if n.Kind == saga.KindAwait {
			w.plans[n.Path] = &plan{await: true, hasUndo: n.Spec.Undo != "", reject: rapid.IntRange(0, 99).Draw(t, "reject") < failRate}
			continue
		}
		if n.Kind != saga.KindAction {
			continue
		}
		p := &plan{hasUndo: n.Spec.Undo != ""}
		for a := 0; a < n.Spec.Retry.MaxAttempts; a++ {
			o := ok
			if rapid.IntRange(0, 99).Draw(t, "fail") < failRate {
				o = rapid.SampledFrom([]outcome{transient, permanent, timeoutNoEffect, timeoutEffect}).Draw(t, "how")
			}
			p.attempts = append(p.attempts, o)
		}
		if rapid.IntRange(0, 99).Draw(t, "undofail") < failRate {
			p.undoFail = rapid.IntRange(1, 3).Draw(t, "undofails")
			p.undoPerm = rapid.IntRange(0, 3).Draw(t, "undoperm") == 0
		}
		w.plans[n.Path] = p
	}
	// Injected faults, on some nodes.
	var faults []events.Fault
	faultRate := rapid.IntRange(0, 20).Draw(t, "faultrate")
	for _, n := range g.Nodes {
		if n.Kind != saga.KindAction || rapid.IntRange(0, 99).Draw(t, "faulty") >= faultRate {
			continue
		}
		f := events.Fault{Node: n.Path,
			FailAction: rapid.IntRange(0, 3).Draw(t, "failaction") == 0,
			Repeat:     rapid.IntRange(0, 3).Draw(t, "repeat")}
		if n.Spec.Undo != "" { // undo faults apply only to nodes with an undo
			f.FailUndo = rapid.IntRange(0, 5).Draw(t, "failundo") == 0
			f.UndoRepeat = rapid.IntRange(0, 3).Draw(t, "undorepeat")
		}
		if f.Clears() {
			continue
		}
		w.plans[n.Path].fault = f
		faults = append(faults, f)
	}
	w.m = emptySim(t)
	w.apply(machine.Start{Now: t0, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{"p":1}`)}, Faults: faults})
	return w
}

// apply decides and commits like a coordinator; rejections are fine (stale
// and duplicate input), anything else is a failure.
func (w *world) apply(in machine.Input) {
	d, err := machine.Decide(w.m.s, in, machine.Options{})
	if err != nil {
		if errors.Is(err, machine.ErrRejected) {
			return
		}
		w.t.Fatalf("Decide(%T %+v): %v", in, in, err)
	}
	if len(d.Events) > 0 {
		w.m.log = append(w.m.log, d.Events)
	}
	w.m.s = d.State
	for _, c := range d.Commands {
		switch c := c.(type) {
		case machine.SendRequest:
			w.requests = append(w.requests, c)
		case machine.ArmTimer:
			w.m.timers[c.Timer.ID()] = c
		}
	}
}

// participant handles one request the way the SDK's idempotency barrier
// does, following the node's plan; it returns the reply, if any.
func (w *world) participant(r machine.SendRequest) (events.ActionReply, bool) {
	q := r.Request
	p := w.plans[q.Node]
	reply := events.ActionReply{RequestID: r.ID, Op: q.Op, Node: q.Node, Attempt: q.Attempt}
	if q.Op == events.OpDo {
		if w.undone[q.Node] {
			reply.Error = &events.Error{Kind: events.ErrorPermanent, Message: "refused: already undone"}
			return reply, true
		}
		if out, ok := w.done[q.Node]; ok {
			reply.OK, reply.Output = true, out
			return reply, true
		}
		o := ok
		if !p.retried && q.Attempt <= len(p.attempts) {
			o = p.attempts[q.Attempt-1]
		}
		switch o {
		case ok:
			w.effect(q.Node)
			reply.OK, reply.Output = true, w.done[q.Node]
			return reply, true
		case transient:
			reply.Error = &events.Error{Kind: events.ErrorTransient, Message: "try again"}
			return reply, true
		case permanent:
			reply.Error = &events.Error{Kind: events.ErrorPermanent, Message: "no"}
			return reply, true
		case timeoutEffect:
			w.effect(q.Node)
		}
		return reply, false // timed out: no reply
	}
	if !p.hasUndo {
		w.t.Fatalf("undo requested for %s, which has no undo", q.Node)
	}
	if w.undone[q.Node] {
		reply.OK = true
		return reply, true
	}
	if !w.retried[q.Node] && (p.undoPerm || q.Attempt <= p.undoFail) {
		kind := events.ErrorTransient
		if p.undoPerm {
			kind = events.ErrorPermanent
		}
		reply.Error = &events.Error{Kind: kind, Message: "undo failed"}
		return reply, true
	}
	w.undone[q.Node] = true
	delete(w.ledger, q.Node)
	reply.OK = true
	return reply, true
}

// signalMoves are the signals the world may send now: each await node's
// signal of its current round (early, before the node starts, too), and
// (dups) duplicates of signals sent, while the saga goes forward.
func (w *world) signalMoves() (out, dups []func()) {
	for i, g := range w.graph.Nodes {
		if g.Kind != saga.KindAwait {
			continue
		}
		n := &w.m.s.Nodes[i]
		round := n.Attempt
		if n.State == machine.NodePending {
			round = 1
		}
		waiting := n.State == machine.NodeStarted && n.Waiting
		if w.signalled[g.Path] >= round || !(waiting || n.State == machine.NodePending) {
			if w.signalled[g.Path] > 0 && w.m.s.Status.Finished() == false && w.m.s.Status != machine.StatusUnwinding && w.m.s.Status != machine.StatusStuck {
				path, sent := g.Path, w.signalled[g.Path]
				dups = append(dups, func() {
					_, err := machine.Decide(w.m.s, w.signalIn(path, sent), machine.Options{})
					if errors.Is(err, machine.ErrDuplicateSignal) {
						stats.duplicates++
					}
				})
			}
			continue
		}
		path := g.Path
		out = append(out, func() {
			if !waiting {
				stats.earlySignals++
			}
			w.signalled[path] = round
			w.apply(w.signalIn(path, round))
		})
	}
	return out, dups
}

// signalIn is the world's signal of an await node's round: the first
// round's rejects the node if its plan says so; later rounds' never do.
func (w *world) signalIn(node string, round int) machine.Signal {
	in := machine.Signal{Now: w.m.now, Node: node, ID: fmt.Sprintf("sig-%s-%d", node, round), Sender: "prop"}
	if round == 1 && w.plans[node].reject {
		in.Reject = "no"
	} else {
		in.Data = json.RawMessage(fmt.Sprintf(`{"signal":%q}`, in.ID))
	}
	return in
}

func (w *world) effect(node string) {
	if _, ok := w.done[node]; ok {
		return
	}
	if w.ledger[node] {
		w.t.Fatalf("double effect of %s", node)
	}
	w.ledger[node] = true
	w.done[node] = json.RawMessage(fmt.Sprintf(`{"from":%q}`, node))
}

func (w *world) run() {
	for step := 0; step < 5000; step++ {
		if w.m.s.Status.Finished() {
			return
		}
		type move struct {
			name string
			do   func()
		}
		var moves []move
		if len(w.requests) > 0 {
			moves = append(moves, move{"request", func() {
				i := rapid.IntRange(0, len(w.requests)-1).Draw(w.t, "req")
				r := w.requests[i]
				w.requests = slices.Delete(w.requests, i, i+1)
				if rep, ok := w.participant(r); ok {
					w.replies = append(w.replies, rep)
				}
			}})
		}
		if len(w.replies) > 0 {
			moves = append(moves, move{"reply", func() {
				i := rapid.IntRange(0, len(w.replies)-1).Draw(w.t, "rep")
				rep := w.replies[i]
				if rapid.IntRange(0, 4).Draw(w.t, "dup") != 0 {
					w.replies = slices.Delete(w.replies, i, i+1)
				}
				w.apply(machine.Reply{Now: w.m.now, Reply: rep})
			}})
		}
		for _, id := range slices.Sorted(maps.Keys(w.m.timers)) {
			tm := w.m.timers[id]
			early := tm.Timer.Kind == machine.TimerTimeout && w.awaited(tm.Timer)
			if early && rapid.IntRange(0, 7).Draw(w.t, "early") != 0 {
				continue // its reply is still coming: mostly, the timeout has not happened
			}
			moves = append(moves, move{"timer", func() {
				if early {
					// A slow participant: the attempt times out, and its
					// request or reply arrives later.
					stats.earlyTimeouts++
					if tm.Timer.Op == events.OpDo {
						w.plans[tm.Timer.Node].unsure = true
					}
				}
				delete(w.m.timers, tm.Timer.ID())
				if tm.At.After(w.m.now) {
					w.m.now = tm.At
				}
				w.apply(machine.TimerFired{Now: w.m.now, Timer: tm.Timer})
			}})
		}
		signals, dups := w.signalMoves()
		for k, sig := range signals {
			moves = append(moves, move{fmt.Sprintf("signal%d", k), sig})
		}
		if w.m.s.Status == machine.StatusWaiting && (len(moves) == 0 || rapid.IntRange(0, 5).Draw(w.t, "waitop") == 0) {
			moves = append(moves, move{"waiting", w.waitingOperator})
		}
		if len(moves) > 0 {
			for k, sig := range dups {
				moves = append(moves, move{fmt.Sprintf("dup%d", k), sig})
			}
		}
		if w.m.s.Paused {
			moves = append(moves, move{"resume", func() { w.apply(machine.Resume{Now: w.m.now}) }})
		} else if rapid.IntRange(0, 30).Draw(w.t, "pause") == 0 {
			stats.pauses++
			w.apply(machine.Pause{Now: w.m.now})
			continue
		}
		if rapid.IntRange(0, 24).Draw(w.t, "midfault") == 0 {
			w.injectMidRun()
			continue
		}
		if len(moves) == 0 && w.m.s.Status == machine.StatusStuck {
			moves = append(moves, move{"operator", w.operator})
		}
		if len(moves) == 0 {
			w.t.Fatalf("saga is %s with nothing left to do:\n%v", w.m.s.Status, w.m.types())
		}
		slices.SortFunc(moves, func(a, b move) int { return cmpString(a.name, b.name) })
		mv := moves[rapid.IntRange(0, len(moves)-1).Draw(w.t, "move")]
		mv.do()
		if rapid.IntRange(0, 19).Draw(w.t, "crash") == 0 {
			w.crash()
		}
	}
	w.t.Fatalf("saga did not finish in 5000 steps: %s", w.m.s.Status)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// injectMidRun sets or clears the fault of a random action node while the
// saga runs, as an operator's `jetsaga fault` does.
func (w *world) injectMidRun() {
	var actions []string
	for _, g := range w.graph.Nodes {
		if g.Kind == saga.KindAction {
			actions = append(actions, g.Path)
		}
	}
	if len(actions) == 0 {
		return
	}
	node := rapid.SampledFrom(actions).Draw(w.t, "faultnode")
	p := w.plans[node]
	f := events.Fault{Node: node,
		FailAction: rapid.Bool().Draw(w.t, "midfailaction"),
		Repeat:     rapid.IntRange(0, 2).Draw(w.t, "midrepeat")}
	if p.hasUndo {
		f.FailUndo = rapid.IntRange(0, 5).Draw(w.t, "midfailundo") == 0
		f.UndoRepeat = rapid.IntRange(0, 2).Draw(w.t, "midundorepeat")
	}
	stats.midRunFaults++
	p.unsure = true
	w.apply(machine.InjectFault{Now: w.m.now, Fault: f, Operator: "prop"})
}

// awaited reports whether a reply to the timer's attempt is still on its way.
func (w *world) awaited(t machine.Timer) bool {
	for _, r := range w.requests {
		if r.Request.Node == t.Node && r.Request.Op == t.Op && r.Request.Attempt == t.Attempt {
			return true
		}
	}
	for _, r := range w.replies {
		if r.Node == t.Node && r.Op == t.Op && r.Attempt == t.Attempt {
			return true
		}
	}
	return false
}

// crash replaces the coordinator: fold the log, check it equals the live
// state, recover. Requests and replies already in flight stay in flight.
func (w *world) crash() {
	w.crashes++
	stats.crashes++
	s, err := machine.Fold(sagaID, w.m.flat())
	if err != nil {
		w.t.Fatalf("fold after crash: %v", err)
	}
	if !reflect.DeepEqual(s, w.m.s) {
		w.t.Fatalf("replayed state differs from the live state")
	}
	w.m.s = s
	w.m.timers = map[string]machine.ArmTimer{}
	if !s.Status.Finished() {
		w.apply(machine.Recover{Now: w.m.now})
	}
}

// waitingOperator acts on a saga waiting for an operator: retry the held
// node (clearing an injected fault first), skip it, or abort.
func (w *world) waitingOperator() {
	held := w.m.s.Held()
	node := held[0]
	g, n, _ := w.m.s.Node(node)
	choice := rapid.IntRange(0, 2).Draw(w.t, "waitchoice")
	if choice == 2 && w.m.s.PastPivot() != "" {
		choice = 0
	}
	switch choice {
	case 0:
		stats.opRetries++
		if n.Fault != nil && n.Fault.FailAction {
			w.apply(machine.InjectFault{Now: w.m.now, Fault: events.Fault{Node: node}, Operator: "prop"})
		}
		if p := w.plans[node]; p != nil {
			p.retried = true
		}
		w.apply(machine.RetryUndo{Now: w.m.now, Node: node, Operator: "prop", Reason: "fixed"})
	case 1:
		stats.opSkips++
		if g.Kind == saga.KindAction {
			// The operator did it by hand: the participant has it on
			// record, so an undo undoes it.
			w.effect(node)
		}
		w.apply(machine.Skip{Now: w.m.now, Node: node, Operator: "prop", Reason: "done by hand", Output: json.RawMessage(`{"skipped":true}`)})
	default:
		stats.opAborts++
		w.apply(machine.Abort{Now: w.m.now, Operator: "prop", Reason: "give up"})
	}
}

func (w *world) operator() {
	stats.stuck++
	for i, g := range w.graph.Nodes {
		if w.m.s.Nodes[i].State != machine.NodeUndoFailed {
			continue
		}
		if rapid.Bool().Draw(w.t, "retry") {
			if w.m.s.Nodes[i].Fault != nil && w.m.s.Nodes[i].Fault.FailUndo {
				// The operator clears the injected fault first.
				w.apply(machine.InjectFault{Now: w.m.now, Fault: events.Fault{Node: g.Path}, Operator: "prop"})
			}
			w.retried[g.Path] = true
			w.apply(machine.RetryUndo{Now: w.m.now, Node: g.Path, Operator: "prop"})
		} else {
			// The operator undoes it by hand.
			w.undone[g.Path] = true
			delete(w.ledger, g.Path)
			w.apply(machine.Resolve{Now: w.m.now, Node: g.Path, Reason: "fixed by hand"})
		}
		return
	}
}

type fate int

const (
	succeeds fate = iota
	fails
	either // the last attempt takes effect without a reply: a re-sent
	// request (after a crash) can still see the effect and succeed
)

// fate says, from the plan alone, how the node's action ends. The barrier
// turns any attempt after one that took effect into a success.
func (p *plan) fate() fate {
	if p.unsure {
		return either
	}
	if p.await {
		if p.reject {
			return fails
		}
		return succeeds // a timeout is accounted for by the caller
	}
	if p.fault.FailAction {
		return fails
	}
	effect := false
	for _, o := range p.attempts {
		if effect {
			return succeeds
		}
		switch o {
		case ok:
			return succeeds
		case permanent:
			return fails
		case timeoutEffect:
			effect = true
		}
	}
	if effect {
		return either
	}
	return fails
}

func (w *world) check() {
	s := w.m.s
	if !s.Status.Finished() {
		w.t.Fatalf("not finished: %s", s.Status)
	}
	log := w.m.flat()
	// Replay equals live state.
	if got, err := machine.Fold(sagaID, log); err != nil || !reflect.DeepEqual(got, s) {
		w.t.Fatalf("replay differs from live state (err %v)", err)
	}

	// Reference outcome. Conditions are fixed by the params, so which nodes
	// are skipped and which fail to evaluate is known; a node fails for sure
	// by its plan, its condition, or a rejecting signal. One that must fail,
	// unwinds on failure (its policy, and no pivot before it) and is not
	// skipped makes the saga unwind; with every node that is not skipped
	// sure to succeed and no deadline, it succeeds.
	skip := w.expectedSkips()
	pivot := -1
	for _, g := range w.graph.Nodes {
		if g.Spec.Pivot && g.Kind == saga.KindAction {
			pivot = g.Index
		}
	}
	mustFail, allSucceed := false, w.def.Deadline == 0
	for _, g := range w.graph.Nodes {
		if skip[g.Index] {
			continue
		}
		f := succeeds
		if p := w.plans[g.Path]; p != nil {
			f = p.fate()
			if p.await && g.Spec.Timeout > 0 && f == succeeds {
				f = either
			}
		}
		if g.When != nil && g.When.Expr == whenError {
			f = fails
		}
		afterPivot := pivot >= 0 && descends(w.graph, g.Index, pivot)
		mustFail = mustFail || (f == fails && g.OnFailure == saga.Unwind && !afterPivot)
		allSucceed = allSucceed && f == succeeds
	}
	stats.outcomes[s.Status]++
	switch {
	case mustFail && s.Status != machine.StatusUnwound,
		allSucceed && s.Status != machine.StatusSucceeded:
		w.t.Fatalf("outcome %s; reference model: must fail %v, all succeed %v\n%v", s.Status, mustFail, allSucceed, w.m.types())
	case pivot >= 0 && s.Nodes[pivot].State == machine.NodeSucceeded && s.Status != machine.StatusSucceeded:
		w.t.Fatalf("the pivot succeeded, yet the saga ended %s\n%v", s.Status, w.m.types())
	}
	// An operator who skipped a subsaga's start gave its inner nodes other
	// params: their conditions may then fail to evaluate instead.
	var opParams func(i int) bool
	opParams = func(i int) bool {
		g := w.graph.Nodes[i]
		for _, st := range []int{g.ScopeStart, g.OwnStart} {
			if st >= 0 && (s.Nodes[st].SkippedBy != "" || opParams(st)) {
				return true
			}
		}
		return false
	}
	for i, g := range w.graph.Nodes {
		n := &s.Nodes[i]
		switch {
		case opParams(i):
		case skip[i] && n.State != machine.NodeSkipped && n.State != machine.NodePending:
			w.t.Fatalf("%s should have been skipped (when %q) but is %s\n%v", g.Path, g.Spec.When, n.State, w.m.types())
		case !skip[i] && n.State == machine.NodeSkipped:
			w.t.Fatalf("%s was skipped, but its condition holds", g.Path)
		case n.State == machine.NodeSkipped:
			stats.skipped++
		}
		if g.Kind == saga.KindAwait && n.Signal != nil && n.State == machine.NodeSucceeded && n.SkippedBy == "" && string(n.Output) != string(n.Signal.Data) {
			w.t.Fatalf("await %s has output %s, its signal %s", g.Path, n.Output, n.Signal.Data)
		}
	}

	// Order of events, and undo bookkeeping, from the log alone.
	succeeded := map[string]bool{}
	unknown := map[string]bool{}
	failed := map[string]bool{}
	started := map[string]bool{}
	timedOut := map[string]bool{}         // some attempt of the node timed out
	startedNoRequest := map[string]bool{} // its latest start sent no request (injected failure)
	undoneAt := map[string]int{}
	skippedAt := map[string]bool{}
	finishedCount, unwinding := 0, 0
	held, pastPivot := map[string]bool{}, false
	for i, e := range log {
		if i > 0 {
			if _, ok := log[i-1].Data.(*events.SagaStuck); ok {
				// Stuck is at rest: only an operator acts next.
				switch e.Data.(type) {
				case *events.OperatorRetry, *events.OperatorResolve, *events.OperatorAbandon, *events.OperatorPause,
					*events.OperatorResume, *events.FaultInjected:
				default:
					w.t.Fatalf("event %d: %s follows saga.stuck", i, e.Type())
				}
			}
		}
		switch d := e.Data.(type) {
		case *events.NodeStarted:
			g, _ := w.graph.Node(d.Node)
			for _, p := range g.Parents {
				if pp := w.graph.Nodes[p].Path; !succeeded[pp] && !skippedAt[pp] {
					w.t.Fatalf("event %d: %s started before its parent %s succeeded", i, d.Node, pp)
				}
			}
			if d.Attempt == 1 && len(held) > 0 {
				w.t.Fatalf("event %d: %s started while the saga waited for an operator on %v", i, d.Node, held)
			}
			started[d.Node] = true
			failed[d.Node] = false
			startedNoRequest[d.Node] = d.Deadline.IsZero()
		case *events.NodeAttemptFailed:
			timedOut[d.Node] = timedOut[d.Node] || d.Error.Kind == events.ErrorTimeout
		case *events.NodeSucceeded:
			succeeded[d.Node] = true
			if g, _ := w.graph.Node(d.Node); g.Spec.Pivot && g.Kind == saga.KindAction {
				pastPivot = true
				stats.pivots++
			}
		case *events.NodeSkipped:
			skippedAt[d.Node] = true
		case *events.SignalReceived:
			stats.signals++
			if d.Reject != "" {
				stats.rejections++
			}
		case *events.SagaWaiting:
			stats.waits++
			g, _ := w.graph.Node(d.Node)
			if g.OnFailure != saga.Pause && !pastPivot {
				w.t.Fatalf("event %d: the saga waits on %s, whose policy is %s, with no pivot passed", i, d.Node, g.OnFailure)
			}
			held[d.Node] = true
		case *events.OperatorSkip:
			delete(held, d.Node)
			succeeded[d.Node], failed[d.Node] = true, false
			if g, _ := w.graph.Node(d.Node); g.Spec.Pivot && g.Kind == saga.KindAction {
				pastPivot = true // the operator says the pivot's action is done
			}
		case *events.OperatorRetry:
			delete(held, d.Node)
		case *events.DeadlinePassed:
			stats.deadlines++
			if e.Time.Before(d.Deadline) {
				w.t.Fatalf("event %d: the deadline %s passed at %s", i, d.Deadline, e.Time)
			}
		case *events.NodeFailed:
			switch d.Error.Kind {
			case events.ErrorInjected:
				stats.injected++
			case events.ErrorCondition:
				stats.conditionErrors++
			case events.ErrorTimeout:
				stats.awaitTimeouts++
			}
			if timedOut[d.Node] {
				if startedNoRequest[d.Node] {
					stats.injectedAfterTimeout++
				}
				// Rule 5: once an attempt may have taken effect, the
				// node's outcome is unknown, whatever ends it.
				if d.Error.Kind != events.ErrorOutcomeUnknown {
					w.t.Fatalf("event %d: %s failed with kind %s after an attempt timed out; want %s", i, d.Node, d.Error.Kind, events.ErrorOutcomeUnknown)
				}
			}
			failed[d.Node] = true
			unknown[d.Node] = d.Error.Kind == events.ErrorOutcomeUnknown
		case *events.UndoStarted:
			g, _ := w.graph.Node(d.Node)
			for _, c := range g.Children {
				cp := w.graph.Nodes[c].Path
				settled := !started[cp] || (failed[cp] && !unknown[cp]) || undoneAt[cp] > 0
				if !settled {
					w.t.Fatalf("event %d: undo of %s started before its child %s was undone", i, d.Node, cp)
				}
			}
			if failed[d.Node] && !unknown[d.Node] {
				w.t.Fatalf("event %d: %s failed (not outcome unknown) and is being undone", i, d.Node)
			}
		case *events.UndoFinished:
			undoneAt[d.Node]++
		case *events.OperatorResolve:
			undoneAt[d.Node]++
		case *events.SagaUnwinding:
			unwinding++
			held = map[string]bool{}
			if pastPivot {
				w.t.Fatalf("event %d: the saga unwinds past its pivot", i)
			}
		case *events.NodeRepeated:
			stats.repeats++
			timedOut[d.Node] = true
		case *events.UndoRepeated:
			stats.repeats++
		case *events.SagaFinished:
			finishedCount++
			if i != len(log)-1 {
				w.t.Fatalf("saga finished at event %d of %d", i, len(log))
			}
		}
	}
	if finishedCount != 1 || unwinding > 1 {
		w.t.Fatalf("%d finished events, %d unwinding events", finishedCount, unwinding)
	}
	for _, g := range w.graph.Nodes {
		needs := succeeded[g.Path] || unknown[g.Path]
		switch {
		case s.Status == machine.StatusUnwound && needs && undoneAt[g.Path] != 1:
			w.t.Fatalf("%s did something but was undone %d times", g.Path, undoneAt[g.Path])
		case !needs && undoneAt[g.Path] != 0:
			w.t.Fatalf("%s did nothing but was undone", g.Path)
		case s.Status == machine.StatusSucceeded && !succeeded[g.Path] && !skippedAt[g.Path]:
			w.t.Fatalf("saga succeeded without %s", g.Path)
		}
	}

	// The participants' ledger: a succeeded saga did every action once; an
	// unwound one left no trace (but of actions that have no undo).
	for path, p := range w.plans {
		if _, n, _ := s.Node(path); p.await || n.State == machine.NodeSkipped {
			continue
		}
		switch {
		case s.Status == machine.StatusSucceeded && !w.ledger[path]:
			w.t.Fatalf("saga succeeded but %s left no effect", path)
		case s.Status == machine.StatusUnwound && p.hasUndo && w.ledger[path]:
			w.t.Fatalf("saga unwound but the effect of %s remains", path)
		}
	}
}

// expectedSkips says which nodes the params make skipped: a false
// condition, or a skipped subsaga around them.
func (w *world) expectedSkips() []bool {
	skip := make([]bool, len(w.graph.Nodes))
	for i, g := range w.graph.Nodes {
		switch {
		case g.When != nil && g.When.Expr == whenFalse:
			skip[i] = true
		case g.ScopeStart >= 0 && skip[g.ScopeStart]:
			skip[i] = true
		case g.OwnStart >= 0 && skip[g.OwnStart]:
			skip[i] = true
		}
	}
	return skip
}
