package machine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/saga"
)

const sagaID = "7d0f2b8e-1c2a-4e0b-9d3c-6a5b4c3d2e1f"

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// fataler is what sim needs of *testing.T and *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// sim drives one saga the way a coordinator does: decide, "append" the
// events to the log, adopt the state, keep the commands.
type sim struct {
	t       fataler
	s       *machine.State
	log     [][]events.Event
	pending map[string]machine.SendRequest // requests sent and not answered, by id
	timers  map[string]machine.ArmTimer
	now     time.Time
	opt     machine.Options
}

// emptySim is a sim of a saga with no events yet.
func emptySim(t fataler) *sim {
	return &sim{t: t, s: machine.New(sagaID), pending: map[string]machine.SendRequest{}, timers: map[string]machine.ArmTimer{}, now: t0}
}

func newSim(t fataler, def *saga.Definition, params string) *sim {
	t.Helper()
	m := emptySim(t)
	m.must(machine.Start{Now: m.now, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(params)}})
	return m
}

// step decides and commits; a rejection is returned and changes nothing.
func (m *sim) step(in machine.Input) (machine.Decision, error) {
	m.t.Helper()
	before := m.s.Clone()
	d, err := machine.Decide(m.s, in, m.opt)
	if !reflect.DeepEqual(before, m.s) {
		m.t.Fatalf("Decide modified its input state")
	}
	if err != nil {
		return d, err
	}
	if len(d.Events) > 0 {
		m.log = append(m.log, d.Events)
	}
	m.s = d.State
	for _, c := range d.Commands {
		switch c := c.(type) {
		case machine.SendRequest:
			m.pending[c.ID] = c
		case machine.ArmTimer:
			m.timers[c.Timer.ID()] = c
		}
	}
	return d, nil
}

func (m *sim) must(in machine.Input) machine.Decision {
	m.t.Helper()
	d, err := m.step(in)
	if err != nil {
		m.t.Fatalf("%T: %v", in, err)
	}
	return d
}

func (m *sim) req(node string, op events.Op) machine.SendRequest {
	m.t.Helper()
	var found []machine.SendRequest
	for _, r := range m.pending {
		if r.Request.Node == node && r.Request.Op == op {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		m.t.Fatalf("no pending %s request for %s; pending: %v", op, node, m.pendingNames())
	}
	slices.SortFunc(found, func(a, b machine.SendRequest) int { return b.Request.Attempt - a.Request.Attempt })
	return found[0]
}

func (m *sim) pendingNames() []string {
	var out []string
	for _, r := range m.pending {
		out = append(out, fmt.Sprintf("%s:%s#%d", r.Request.Node, r.Request.Op, r.Request.Attempt))
	}
	slices.Sort(out)
	return out
}

func replyTo(r machine.SendRequest, ok bool, output string, e *events.Error) events.ActionReply {
	rep := events.ActionReply{RequestID: r.ID, Op: r.Request.Op, Node: r.Request.Node, Attempt: r.Request.Attempt, OK: ok, Error: e}
	if output != "" {
		rep.Output = json.RawMessage(output)
	}
	return rep
}

func (m *sim) answer(node string, op events.Op, ok bool, output string, e *events.Error) machine.Decision {
	m.t.Helper()
	r := m.req(node, op)
	delete(m.pending, r.ID)
	return m.must(machine.Reply{Now: m.now, Reply: replyTo(r, ok, output, e)})
}

func (m *sim) succeed(node string, output string) machine.Decision {
	m.t.Helper()
	return m.answer(node, events.OpDo, true, output, nil)
}

func (m *sim) fail(node string, kind events.ErrorKind) machine.Decision {
	m.t.Helper()
	return m.answer(node, events.OpDo, false, "", &events.Error{Kind: kind, Message: "boom"})
}

func (m *sim) undone(node string) machine.Decision {
	m.t.Helper()
	return m.answer(node, events.OpUndo, true, "", nil)
}

func (m *sim) undoFail(node string, kind events.ErrorKind) machine.Decision {
	m.t.Helper()
	return m.answer(node, events.OpUndo, false, "", &events.Error{Kind: kind, Message: "undo boom"})
}

// fire fires the timer of the given kind for the node's latest attempt.
func (m *sim) fire(node string, op events.Op, kind machine.TimerKind) machine.Decision {
	m.t.Helper()
	var best *machine.ArmTimer
	for _, tm := range m.timers {
		if tm.Timer.Node == node && tm.Timer.Op == op && tm.Timer.Kind == kind && (best == nil || tm.Timer.Attempt > best.Timer.Attempt) {
			best = &tm
		}
	}
	if best == nil {
		m.t.Fatalf("no %s %s timer for %s", op, kind, node)
	}
	delete(m.timers, best.Timer.ID())
	if best.At.After(m.now) {
		m.now = best.At
	}
	if kind == machine.TimerTimeout {
		for id, r := range m.pending {
			if r.Request.Node == node && r.Request.Op == op && r.Request.Attempt == best.Timer.Attempt {
				delete(m.pending, id)
			}
		}
	}
	return m.must(machine.TimerFired{Now: m.now, Timer: best.Timer})
}

func (m *sim) state(node string) machine.NodeState {
	m.t.Helper()
	_, n, ok := m.s.Node(node)
	if !ok {
		m.t.Fatalf("no node %s", node)
	}
	return n.State
}

func (m *sim) flat() []events.Event {
	var out []events.Event
	for _, b := range m.log {
		out = append(out, b...)
	}
	return out
}

// checkReplay folds the log and compares with the live state.
func (m *sim) checkReplay() {
	m.t.Helper()
	got, err := machine.Fold(sagaID, m.flat())
	if err != nil {
		m.t.Fatalf("replay: %v", err)
	}
	if !reflect.DeepEqual(got, m.s) {
		m.t.Fatalf("replayed state differs from live state:\n got %+v\nlive %+v", got, m.s)
	}
}

// types lists the log's event types with their nodes, for assertions.
func (m *sim) types() []string {
	var out []string
	for _, e := range m.flat() {
		s := string(e.Type())
		s = s[len("io.jetsaga."):]
		s = s[:len(s)-len(".v1")]
		if n := events.NodeOf(e); n != "" {
			s += " " + n
		}
		out = append(out, s)
	}
	return out
}

// logEvent is the n-th event of a hand-written log of saga sagaID.
func logEvent(n int, d events.Data) events.Event {
	return events.Event{ID: events.LogEventID(sagaID, n), SagaID: sagaID, Source: "x", Time: t0, Data: d}
}

func requireRejected(t testing.TB, err error, want string) {
	t.Helper()
	var re *machine.RejectedError
	if !errors.As(err, &re) || !errors.Is(err, machine.ErrRejected) {
		t.Fatalf("err = %v, want *RejectedError", err)
	}
	if want != "" && !strings.Contains(err.Error(), want) {
		t.Fatalf("err %q lacks %q", err, want)
	}
}
