package events_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
)

func TestRollupRestatesTheLog(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	bodies := logEvents(t)
	src := events.SourceCoordinator + "/dev-1"
	var msgs [][]byte
	var want []events.Event
	// saga.created, then one event per message; one message as a
	// CloudEvents batch (another writer's time per event).
	for i, b := range bodies[:5] {
		evs := decision(i, at.Add(time.Duration(i)*time.Millisecond), src, 3, b)
		var raw []byte
		var err error
		if i == 3 {
			raw, err = events.EncodeBatch(evs)
		} else {
			raw, err = events.EncodeLog(sagaID, trace, evs)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.DecodeLog(sagaID, raw)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, raw)
		want = append(want, got...)
	}
	r, err := events.EncodeRollup(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if !events.IsRollup(r) || !strings.HasPrefix(string(r), "[3,") {
		t.Fatalf("not a rollup: %.40s", r)
	}
	got, err := events.DecodeLog(sagaID, r)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("a rollup reads as %d events, its messages as %d", len(got), len(want))
	}
	parts, ok, err := events.SplitRollup(r)
	if err != nil || !ok || len(parts) != len(msgs) {
		t.Fatalf("split: %v %v %d", err, ok, len(parts))
	}
	for i := range parts {
		if string(parts[i]) != string(msgs[i]) {
			t.Fatalf("message %d changed in the rollup:\n%s\n%s", i, parts[i], msgs[i])
		}
	}
	// A rollup of a rollup and one more message flattens.
	more, err := events.EncodeRollup([][]byte{r, msgs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if parts, _, _ := events.SplitRollup(more); len(parts) != len(msgs)+1 {
		t.Fatalf("nested rollup: %d parts", len(parts))
	}
	for _, m := range msgs {
		if events.IsRollup(m) {
			t.Fatalf("a plain message taken for a rollup: %.30s", m)
		}
		if _, ok, err := events.SplitRollup(m); ok || err != nil {
			t.Fatalf("split of a plain message: %v %v", ok, err)
		}
	}
}

func TestRollupErrorsSayWhat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`[3]`:               "restates no messages",
		`[3,[3,[2]]]`:       "message 0: is a rollup inside a rollup",
		`[3,"x"`:            "malformed rollup",
		`[3,[2,0,1,"c",0]]`: "rollup message 0: ",
	} {
		if _, err := events.DecodeLog(sagaID, []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if _, err := events.EncodeRollup(nil); err == nil {
		t.Error("a rollup of nothing")
	}
	if _, err := events.EncodeRollup([][]byte{[]byte(`{"a":1}`)}); err == nil || !strings.Contains(err.Error(), "rollup message 0 is not a log message") {
		t.Errorf("an object: %v", err)
	}
}
