package sagatest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

// actionNodes lists the definition's action nodes (subsagas' included, by
// path), or fails the test for a definition that does not compile.
func (k *Kit) actionNodes(check string, def *saga.Definition) []string {
	k.t.Helper()
	g, err := saga.Compile(def)
	if err != nil {
		k.t.Fatalf("%s: %v", check, err)
	}
	nodes := machine.ActionNodes(g)
	if len(nodes) == 0 {
		k.t.Fatalf("%s: saga %s has no action nodes", check, def.Name)
	}
	return nodes
}

// ActionsSucceedIdempotently runs the saga once as it is and once with
// every action run twice (the second run's output kept), and checks that
// both succeed and leave the same state. An action that is not idempotent
// (a second run books a second seat, or fails because the first run's
// record exists) fails the check; the check then runs each action twice on
// its own to name the nodes at fault. Before must reset the system: both
// runs start from the state it returns.
func (k *Kit) ActionsSucceedIdempotently(def *saga.Definition, params func() any, h Hooks) {
	k.t.Helper()
	const check = "ActionsSucceedIdempotently"
	nodes := k.actionNodes(check, def)
	p := params()
	before, s, after, ok := k.observe(check, "a normal run", def, p, nil, h)
	if !ok {
		return
	}
	if s.Status != client.StatusSucceeded {
		k.t.Errorf("%s: without faults, saga %s %s%s; the check needs a run that succeeds (check the params)", check, s.ID, s.Status, failure(s))
		return
	}
	repeatAll := make([]events.Fault, len(nodes))
	for i, n := range nodes {
		repeatAll[i] = events.Fault{Node: n, Repeat: 2}
	}
	before2, s2, after2, ok := k.observe(check, "every action run twice", def, p, repeatAll, h)
	if !ok || !k.sameStart(check, before, before2) {
		return
	}
	if s2.Status == client.StatusSucceeded && reflect.DeepEqual(after, after2) {
		return
	}
	// Something is not idempotent: find which nodes.
	var culprits []string
	for _, n := range nodes {
		b, sn, a, ok := k.observe(check, "node "+n+" run twice", def, p, []events.Fault{{Node: n, Repeat: 2}}, h)
		if !ok || !k.sameStart(check, before, b) {
			return
		}
		switch {
		case sn.Status != client.StatusSucceeded:
			culprits = append(culprits, fmt.Sprintf("node %q: with its action run twice, saga %s %s%s", n, sn.ID, sn.Status, failure(sn)))
		case !reflect.DeepEqual(after, a):
			culprits = append(culprits, fmt.Sprintf("node %q: with its action run twice (saga %s), the state differs from a normal run's (saga %s):\n%s",
				n, sn.ID, s.ID, diff(after, a, "normal run", "run twice")))
		}
	}
	if len(culprits) == 0 {
		// Only the combination fails: report it as it is.
		if s2.Status != client.StatusSucceeded {
			culprits = append(culprits, fmt.Sprintf("with every action run twice, saga %s %s%s", s2.ID, s2.Status, failure(s2)))
		} else {
			culprits = append(culprits, fmt.Sprintf("with every action run twice (saga %s), the state differs from a normal run's (saga %s):\n%s", s2.ID, s.ID, diff(after, after2, "normal run", "run twice")))
		}
	}
	k.t.Errorf("%s: an action is not idempotent:\n%s", check, strings.Join(culprits, "\n"))
}

// ActionFailureCanUnwind runs the saga once for each action node with the
// node's action failing there (without running), and checks that the
// saga unwinds because of that node and leaves the state as it found it.
// It also runs the saga once without faults: if the saga unwinds on its
// own, the state must be restored too. A non-atomic action (one that
// fails after changing something) and an undo that does not restore what
// its action changed fail the check.
func (k *Kit) ActionFailureCanUnwind(def *saga.Definition, params func() any, h Hooks) {
	k.t.Helper()
	k.failureCanUnwind("ActionFailureCanUnwind", def, params, h, 1)
}

// ActionFailureCanUnwindIdempotently is ActionFailureCanUnwind with every
// undo run twice: an undo that does not tolerate running again (it fails,
// or takes back more than its action did) fails the check.
func (k *Kit) ActionFailureCanUnwindIdempotently(def *saga.Definition, params func() any, h Hooks) {
	k.t.Helper()
	k.failureCanUnwind("ActionFailureCanUnwindIdempotently", def, params, h, 2)
}

func (k *Kit) failureCanUnwind(check string, def *saga.Definition, params func() any, h Hooks, undoRuns int) {
	k.t.Helper()
	nodes := k.actionNodes(check, def)
	g, _ := saga.Compile(def) // actionNodes compiled it already
	undoRepeat := func(except string) []events.Fault {
		var fs []events.Fault
		for _, n := range nodes {
			// Only nodes with an undo: an undo fault on any other is refused.
			if gn, _ := g.Node(n); n != except && undoRuns > 1 && gn.Spec.Undo != "" {
				fs = append(fs, events.Fault{Node: n, UndoRepeat: undoRuns})
			}
		}
		return fs
	}
	// Without an injected failure: a saga that unwinds on its own must
	// restore the state as well, and hides the nodes after the one that
	// failed from the check.
	before, s, after, ok := k.observe(check, "no injected failure", def, params(), undoRepeat(""), h)
	if !ok {
		return
	}
	natural := ""
	if s.Status == client.StatusUnwound {
		natural = s.FailedNode
		msg := fmt.Sprintf("%s: without an injected failure, saga %s unwound because node %q failed on its own%s", check, s.ID, natural, nodeError(s, natural))
		if !reflect.DeepEqual(before, after) {
			msg += fmt.Sprintf(", and the state after unwinding differs from before (an action that fails must change nothing; an undo must restore what its action did)%s:\n%s", undone(s), diff(before, after))
		} else {
			msg += "; with these params the check cannot inject failures into the nodes after it: give params with which the saga succeeds"
		}
		k.t.Errorf("%s", msg)
	}
	for _, node := range nodes {
		if why := forwardOnly(g, node); why != "" {
			// Its failure waits for an operator by design: nothing to
			// unwind to check.
			k.t.Logf("%s: node %q not checked: %s", check, node, why)
			continue
		}
		faults := append(undoRepeat(node), events.Fault{Node: node, FailAction: true})
		what := fmt.Sprintf("failure injected at node %q", node)
		before, s, after, ok := k.observe(check, what, def, params(), faults, h)
		if !ok {
			continue
		}
		switch {
		case s.Status != client.StatusUnwound:
			k.t.Errorf("%s: %s: saga %s %s, want unwound%s", check, what, s.ID, s.Status, failure(s))
			continue
		case s.FailedNode != node && s.FailedNode != natural:
			k.t.Errorf("%s: %s: saga %s unwound because node %q failed on its own%s, before the injected failure",
				check, what, s.ID, s.FailedNode, nodeError(s, s.FailedNode))
		}
		if !reflect.DeepEqual(before, after) {
			k.t.Errorf("%s: %s (saga %s): the state after unwinding differs from before%s:\n%s",
				check, what, s.ID, undone(s), diff(before, after))
		}
	}
}

// forwardOnly says why a failure of node does not unwind the saga (its
// on_failure is pause, or it comes after a pivot), or "" if it does.
func forwardOnly(g *saga.Graph, node string) string {
	n, _ := g.Node(node)
	if n.OnFailure == saga.Pause {
		return "its failure policy is pause: a failure waits for an operator"
	}
	var after func(i int) string
	after = func(i int) string {
		for _, p := range g.Nodes[i].Parents {
			if pn := g.Nodes[p]; pn.Spec.Pivot && pn.Kind != saga.KindSubsagaStart {
				return pn.Path
			}
			if pv := after(p); pv != "" {
				return pv
			}
		}
		return ""
	}
	if pv := after(n.Index); pv != "" {
		return fmt.Sprintf("it comes after pivot %q: past it a failure is retried forward and waits for an operator", pv)
	}
	return ""
}

// CrashAtEveryEvent runs the saga once without interruption, then once for
// each message of that run's log with the coordinator dying right after
// the message is durable (before it sends the requests or arms the timers
// it decided) and another coordinator taking over. Each run must end as
// the uninterrupted one did, with the same node states and the same
// system state. (Events of one decision are one log message, written
// atomically: the log has no point between them to crash at.) Before must
// reset the system: every run starts from the state it returns.
func (k *Kit) CrashAtEveryEvent(def *saga.Definition, params func() any, h Hooks) {
	k.t.Helper()
	const check = "CrashAtEveryEvent"
	k.actionNodes(check, def)
	p := params()
	before, ref, after, ok := k.observe(check, "an uninterrupted run", def, p, nil, h)
	if !ok {
		return
	}
	total := messages(ref)
	for at := 1; at <= total; at++ {
		what := fmt.Sprintf("coordinator crashed after log message %d of %d", at, total)
		b, s, a, ok := k.observeCrash(check, what, def, p, h, at)
		if !ok || !k.sameStart(check, before, b) {
			return
		}
		if got, want := outcome(s), outcome(ref); got != want {
			k.t.Errorf("%s: %s (saga %s): %s; the uninterrupted run (saga %s): %s", check, what, s.ID, got, ref.ID, want)
			continue
		}
		if !reflect.DeepEqual(a, after) {
			k.t.Errorf("%s: %s (saga %s): the state differs from the uninterrupted run's (saga %s):\n%s", check, what, s.ID, ref.ID, diff(after, a, "uninterrupted run", "this run"))
		}
	}
}

// NoStuckUndos fails the test for every saga the kit has run that is stuck
// on a failed undo, naming the saga, the node and the undo's error.
func (k *Kit) NoStuckUndos() {
	k.t.Helper()
	for _, id := range k.Sagas() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := k.cl.Status(ctx, id)
		cancel()
		if err != nil {
			k.t.Errorf("NoStuckUndos: saga %s: %v", id, err)
			continue
		}
		if msg := stuck(s); msg != "" {
			k.t.Errorf("NoStuckUndos: %s", msg)
		}
	}
}

// observe runs one saga between the hooks. A saga that hangs or gets stuck
// fails the test (reported with the check and what the run was); ok is
// false then.
func (k *Kit) observe(check, what string, def *saga.Definition, params any, faults []events.Fault, h Hooks) (before any, s *client.Saga, after any, ok bool) {
	k.t.Helper()
	return k.observeRun(check, what, def, params, faults, h, nil)
}

func (k *Kit) observeCrash(check, what string, def *saga.Definition, params any, h Hooks, at int) (any, *client.Saga, any, bool) {
	k.t.Helper()
	return k.observeRun(check, what, def, params, nil, h, &crashPoint{at: at})
}

func (k *Kit) observeRun(check, what string, def *saga.Definition, params any, faults []events.Fault, h Hooks, crash *crashPoint) (any, *client.Saga, any, bool) {
	k.t.Helper()
	before := h.before(k.t)
	s, err := k.run(def, params, faults, crash)
	if err != nil {
		k.t.Errorf("%s: %s: %v", check, what, err)
		return nil, nil, nil, false
	}
	after := h.after(k.t)
	if msg := stuck(s); msg != "" {
		k.t.Errorf("%s: %s: %s", check, what, msg)
		return nil, nil, nil, false
	}
	return before, s, after, true
}

// sameStart checks that two runs began from the same state.
func (k *Kit) sameStart(check string, first, now any) bool {
	k.t.Helper()
	if reflect.DeepEqual(first, now) {
		return true
	}
	k.t.Errorf("%s: Before returned a different state for a later run, so runs cannot be compared: reset the system in Before, or leave ids that differ between runs out of the capture:\n%s",
		check, diff(first, now, "first run", "this run"))
	return false
}

// stuck describes a saga stuck on failed undos, or returns "".
func stuck(s *client.Saga) string {
	var msgs []string
	for _, n := range s.Nodes {
		if n.State == string(machine.NodeUndoFailed) {
			msgs = append(msgs, fmt.Sprintf("saga %s is stuck: the undo of node %q failed%s", s.ID, n.Path, errText(n.Error)))
		}
	}
	return strings.Join(msgs, "; ")
}

// outcome is how a saga ended, with every node's state, for comparing runs.
func outcome(s *client.Saga) string {
	var b strings.Builder
	b.WriteString(s.Status)
	if s.FailedNode != "" {
		fmt.Fprintf(&b, " (node %s failed)", s.FailedNode)
	}
	b.WriteString("; nodes:")
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, " %s=%s", n.Path, n.State)
	}
	return b.String()
}

// failure says why a saga that did not succeed ended as it did.
func failure(s *client.Saga) string {
	if s.FailedNode == "" {
		return ""
	}
	return fmt.Sprintf(": node %q failed%s", s.FailedNode, nodeError(s, s.FailedNode))
}

func nodeError(s *client.Saga, path string) string {
	n, _ := s.Node(path)
	return errText(n.Error)
}

func errText(e *events.Error) string {
	if e == nil {
		return ""
	}
	return " (" + e.String() + ")"
}

// undone lists the nodes whose undo ran, for a failure message.
func undone(s *client.Saga) string {
	var names []string
	for i := len(s.Nodes) - 1; i >= 0; i-- {
		if n := s.Nodes[i]; n.State == string(machine.NodeUndoFinished) && n.Kind == string(saga.KindAction) {
			names = append(names, n.Path)
		}
	}
	if len(names) == 0 {
		return "; no undo ran"
	}
	return "; undos ran for " + strings.Join(names, ", ")
}
