package sagalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

const id = "0b8f4e1c-3f3a-4a51-9a7b-1c2d3e4f5a6b"

// created is the first log message of a one-node saga, as a coordinator
// would write it (referring to its definition), and its saga.created.
func created(t *testing.T) ([]byte, *events.SagaCreated) {
	t.Helper()
	def := saga.New("s").Then(saga.Action("a", "svc.a")).MustBuild()
	d, err := machine.Decide(machine.New(id), machine.Start{Now: time.Now(), Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.EncodeLog(id, "", d.Events)
	if err != nil {
		t.Fatal(err)
	}
	return b, d.Events[0].Data.(*events.SagaCreated)
}

// docs resolves from memory.
type docs struct{ c *events.SagaCreated }

func (d docs) Resolve(_ context.Context, c *events.SagaCreated) error {
	if c.DefinitionRef != d.c.DefinitionRef {
		return errors.New("no such definition")
	}
	c.Definition, c.Defaults = d.c.Definition, d.c.Defaults
	return nil
}

func TestDecodeAllResolvesAndApplySaysWhere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, c := created(t)
	if strings.Contains(string(b), `"nodes"`) {
		t.Fatalf("the log holds the definition: %s", b)
	}
	if _, err := sagalog.DecodeAll(ctx, nil, id, []streams.Entry{{Seq: 7, Data: b}}); err == nil || !strings.Contains(err.Error(), "log message 7: saga.created refers to definition "+c.DefinitionRef) {
		t.Fatalf("without a resolver: %v", err)
	}
	msgs, err := sagalog.DecodeAll(ctx, docs{c}, id, []streams.Entry{{Seq: 7, Data: b}})
	if err != nil || len(msgs) != 1 || msgs[0].Seq != 7 {
		t.Fatalf("decode: %v, %+v", err, msgs)
	}
	s := machine.New(id)
	if err := sagalog.Apply(s, msgs[0]); err != nil || s.Status != machine.StatusRunning || s.Created.Definition.Name != "s" {
		t.Fatalf("apply: %v, %s", err, s.Status)
	}
	before := s.Clone()
	if _, err := sagalog.DecodeAll(ctx, docs{c}, id, []streams.Entry{{Seq: 9, Data: []byte("not json")}}); err == nil || !strings.Contains(err.Error(), "saga "+id+" log message 9") {
		t.Errorf("garbage: %v", err)
	}
	if err := sagalog.Apply(s, sagalog.Message{Seq: 9, Events: msgs[0].Events}); err == nil || !strings.Contains(err.Error(), "saga "+id+" log message 9") {
		t.Errorf("a second saga.created: %v", err)
	}
	if s.Events != before.Events || s.Status != before.Status {
		t.Fatal("a refused message changed the state")
	}
}

func TestFollowWaitsForTheLogThenFolds(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Apply(ctx, js, streams.Config{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	log := streams.NewLog(js)
	store, err := defs.Open(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	first, c := created(t)
	if err := store.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	never := func(*machine.State) bool { return true }
	if _, err := sagalog.Follow(ctx, nc, log, store, id, 200*time.Millisecond, nil, never); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("a saga with no log, after the grace: %v", err)
	}
	// With no grace it waits for the log to appear.
	got := make(chan *machine.State, 1)
	var seen []uint64
	go func() {
		st, err := sagalog.Follow(ctx, nc, log, store, id, 0, func(m sagalog.Message) error {
			seen = append(seen, m.Seq)
			return nil
		}, func(st *machine.State) bool { return st.Status == machine.StatusRunning })
		if err != nil {
			t.Error(err)
		}
		got <- st
	}()
	seq, err := log.Append(ctx, id, 0, first)
	if err != nil {
		t.Fatal(err)
	}
	st := <-got
	if st == nil || st.Status != machine.StatusRunning || len(seen) != 1 || seen[0] != seq {
		t.Fatalf("followed state %v, messages %v (appended %d)", st, seen, seq)
	}
}

// A read that spans pages may return the messages of a log and then the
// rollup that restates them: they are read once.
func TestDecodeAllTakesTheLastRollup(t *testing.T) {
	t.Parallel()
	b, c := created(t)
	rollup, err := events.EncodeRollup([][]byte{b})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := sagalog.DecodeAll(context.Background(), docs{c}, id, []streams.Entry{{Seq: 1, Data: b}, {Seq: 2, Data: rollup}})
	if err != nil || len(msgs) != 1 || msgs[0].Seq != 2 || msgs[0].N != 1 {
		t.Fatalf("%v, %+v", err, msgs)
	}
}
