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

func fuzzDef() *saga.Definition {
	inner := saga.New("inner").Then(saga.Action("x", "s.x").Undo("s.ux")).MustBuild()
	return saga.New("f").
		Then(saga.Action("a", "s.a").Undo("s.ua").Retry(saga.RetryPolicy{MaxAttempts: 2})).
		Parallel(saga.Action("b", "s.b").Undo("s.ub"), saga.Subsaga("c", inner, "a")).
		Then(saga.Constant("k", 1)).MustBuild()
}

// FuzzFoldEventSequences folds arbitrary sequences of well-formed events
// (each byte chooses a type, a node and an attempt): never a panic, and an
// event that is refused leaves the state as it was.
func FuzzFoldEventSequences(f *testing.F) {
	f.Add([]byte{0x00, 0x10, 0x21, 0x31})
	f.Add([]byte{0x00, 0x11, 0x12, 0x51, 0x62, 0x73, 0x84, 0x95})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	nodes := []string{"a", "b", "c/@start", "c/x", "c", "k", "ghost"}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := machine.New(sagaID)
		n := 0
		ev := func(d events.Data) events.Event {
			return events.Event{ID: events.LogEventID(sagaID, n), SagaID: sagaID, Source: "/f", Time: t0, Data: d}
		}
		for _, b := range in {
			node := nodes[int(b&0x0f)%len(nodes)]
			attempt := int(b&0x03) + 1
			var d events.Data
			switch b >> 4 {
			case 0:
				d = &events.SagaCreated{Definition: fuzzDef(), Params: json.RawMessage(`{}`)}
			case 1:
				d = &events.NodeStarted{Node: node, Attempt: attempt}
			case 2:
				d = &events.NodeSucceeded{Node: node, Attempt: attempt, Output: json.RawMessage(`1`)}
			case 3:
				d = &events.NodeAttemptFailed{Node: node, Attempt: attempt, Error: events.Error{Kind: events.ErrorTimeout}}
			case 4:
				d = &events.NodeFailed{Node: node, Attempt: attempt, Error: events.Error{Kind: events.ErrorOutcomeUnknown}}
			case 5:
				d = &events.SagaUnwinding{Reason: events.UnwindNodeFailed, Node: node}
			case 6:
				d = &events.UndoStarted{Node: node, Attempt: attempt}
			case 7:
				d = &events.UndoAttemptFailed{Node: node, Attempt: attempt, Error: events.Error{Kind: events.ErrorTransient}}
			case 8:
				d = &events.UndoFinished{Node: node, Attempt: attempt}
			case 9:
				d = &events.UndoFailed{Node: node, Attempt: attempt, Error: events.Error{Kind: events.ErrorPermanent}}
			case 10:
				if attempt%2 == 0 {
					d = &events.SagaStuck{Undos: []events.FailedUndo{{Node: node}}}
				} else {
					d = &events.SagaStuckV1{Node: node}
				}
			case 11:
				d = &events.OperatorRetry{Node: node}
			case 12:
				d = &events.OperatorResolve{Node: node, Reason: "r"}
			case 13:
				d = &events.OperatorAbort{}
			case 14:
				d = &events.OperatorAbandon{}
			default:
				d = &events.SagaFinished{Outcome: []events.Outcome{events.OutcomeSucceeded, events.OutcomeUnwound, events.OutcomeAbandoned}[attempt%3]}
			}
			before := s.Clone()
			if err := s.Apply(ev(d)); err != nil {
				if !errors.Is(err, machine.ErrIllegal) {
					t.Fatalf("error is not an IllegalEventError: %v", err)
				}
				if !reflect.DeepEqual(before, s) {
					t.Fatalf("refused event %T changed the state", d)
				}
				continue
			}
			n++
			// Deciding from any reachable state does not panic either.
			_, _ = machine.Decide(s, machine.Recover{Now: t0.Add(time.Hour)}, machine.Options{})
		}
	})
}

// FuzzFoldDecodedLog decodes arbitrary bytes as one log message and folds it.
func FuzzFoldDecodedLog(f *testing.F) {
	m := newSim(f, chain("a", "b"), `{}`)
	m.succeed("a", `1`)
	m.fail("b", events.ErrorPermanent)
	b, _ := events.EncodeBatch(m.flat())
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, err := events.DecodeBatch(in)
		if err != nil {
			return
		}
		if _, err := machine.Fold(sagaID, evs); err != nil && !errors.Is(err, machine.ErrIllegal) {
			t.Fatalf("error is not an IllegalEventError: %v", err)
		}
	})
}
