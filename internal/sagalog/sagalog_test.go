package sagalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

const id = "0b8f4e1c-3f3a-4a51-9a7b-1c2d3e4f5a6b"

// created is the first log message of a one-node saga, as a coordinator
// would write it.
func created(t *testing.T) []byte {
	t.Helper()
	def := saga.New("s").Then(saga.Action("a", "svc.a")).MustBuild()
	d, err := machine.Decide(machine.New(id), machine.Start{Now: time.Now(), Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.EncodeBatch(d.Events)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyDecodesAndFoldsOrSaysWhere(t *testing.T) {
	t.Parallel()
	s := machine.New(id)
	m, err := sagalog.Apply(s, streams.Entry{Seq: 7, Data: created(t)})
	if err != nil || m.Seq != 7 || len(m.Events) == 0 || s.Status != machine.StatusRunning {
		t.Fatalf("apply: %v, %+v, %s", err, m, s.Status)
	}
	before := s.Clone()
	for _, bad := range [][]byte{[]byte("not json"), created(t)} { // garbage; a second saga.created
		_, err := sagalog.Apply(s, streams.Entry{Seq: 9, Data: bad})
		if err == nil || !strings.Contains(err.Error(), "saga "+id+" log message 9") {
			t.Errorf("bad message: %v", err)
		}
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
	never := func(*machine.State) bool { return true }
	if _, err := sagalog.Follow(ctx, nc, log, id, 200*time.Millisecond, nil, never); !errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("a saga with no log, after the grace: %v", err)
	}
	// With no grace it waits for the log to appear.
	got := make(chan *machine.State, 1)
	var seen []uint64
	go func() {
		st, err := sagalog.Follow(ctx, nc, log, id, 0, func(m sagalog.Message) error {
			seen = append(seen, m.Seq)
			return nil
		}, func(st *machine.State) bool { return st.Status == machine.StatusRunning })
		if err != nil {
			t.Error(err)
		}
		got <- st
	}()
	seq, err := log.Append(ctx, id, 0, created(t))
	if err != nil {
		t.Fatal(err)
	}
	st := <-got
	if st == nil || st.Status != machine.StatusRunning || len(seen) != 1 || seen[0] != seq {
		t.Fatalf("followed state %v, messages %v (appended %d)", st, seen, seq)
	}
}
