package barrier

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	live, expired := now.Add(time.Second), now.Add(-time.Second)
	rec := func(s State, lock time.Time) *Record { return &Record{State: s, LockUntil: lock} }
	tests := []struct {
		name string
		rec  *Record
		do   Verdict
		undo Verdict
	}{
		{"absent", nil, VerdictRun, VerdictTombstone},
		{"running, lock live", rec(StateRunning, live), VerdictWait, VerdictWait},
		{"running, lock expired", rec(StateRunning, expired), VerdictRun, VerdictRun},
		{"running, lock expires now", rec(StateRunning, now), VerdictRun, VerdictRun},
		{"unknown", rec(StateUnknown, time.Time{}), VerdictRun, VerdictRun},
		{"done", rec(StateDone, time.Time{}), VerdictReplyOutput, VerdictRun},
		{"failed", rec(StateFailed, time.Time{}), VerdictReplyError, VerdictTombstone},
		// The requests below are for attempt 2.
		{"this attempt failed transiently", &Record{State: StateRetry, Attempt: 2}, VerdictReplyError, VerdictTombstone},
		{"a later attempt failed transiently: this one is stale", &Record{State: StateRetry, Attempt: 3}, VerdictReplyError, VerdictTombstone},
		{"an earlier attempt failed transiently", &Record{State: StateRetry, Attempt: 1}, VerdictRun, VerdictTombstone},
		{"this attempt failed for good", &Record{State: StateFailed, Attempt: 2}, VerdictReplyError, VerdictTombstone},
		// Only an operator's retry asks again after a failure for good.
		{"an earlier attempt failed for good: an operator's retry", &Record{State: StateFailed, Attempt: 1}, VerdictRun, VerdictTombstone},
		{"undoing, lock live", rec(StateUndoing, live), VerdictRefuse, VerdictWait},
		{"undoing, lock expired", rec(StateUndoing, expired), VerdictRefuse, VerdictRun},
		{"undoing, released", rec(StateUndoing, time.Time{}), VerdictRefuse, VerdictRun},
		{"undone", rec(StateUndone, time.Time{}), VerdictRefuse, VerdictUndone},
		{"tombstone", rec(StateTombstone, time.Time{}), VerdictRefuse, VerdictUndone},
		{"from a newer version", rec("paused", live), VerdictCorrupt, VerdictCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(events.OpDo, 2, tt.rec, now); got != tt.do {
				t.Errorf("do: got Verdict %d, want %d", got, tt.do)
			}
			if got := Decide(events.OpUndo, 2, tt.rec, now); got != tt.undo {
				t.Errorf("undo: got Verdict %d, want %d", got, tt.undo)
			}
		})
	}
}

func TestAcquiredAndSettled(t *testing.T) {
	t.Parallel()
	now := time.Now()
	out := json.RawMessage(`{"seat":"12A"}`)
	perm := &events.Error{Kind: events.ErrorPermanent, Message: "no"}
	tests := []struct {
		name  string
		op    events.Op
		prior *Record
		kind  Outcome
		// want is the state after (empty: key deleted); interrupted is
		// what the lock and the record after say about earlier runs.
		held        State
		want        State
		interrupted bool
		output      string
	}{
		{"do ok", events.OpDo, nil, OutcomeOK, StateRunning, StateDone, false, `{"seat":"12A"}`},
		{"do permanent", events.OpDo, nil, OutcomePermanent, StateRunning, StateFailed, false, ""},
		{"do transient: the answer is kept", events.OpDo, nil, OutcomeRetry, StateRunning, StateRetry, false, ""},
		{"do stopped: as if never run", events.OpDo, nil, OutcomeStopped, StateRunning, "", false, ""},
		{"next attempt after a transient failure", events.OpDo, &Record{State: StateRetry, Attempt: 1}, OutcomeOK, StateRunning, StateDone, false, `{"seat":"12A"}`},
		{"takeover transient: maybe ran", events.OpDo, &Record{State: StateRunning}, OutcomeRetry, StateRunning, StateUnknown, true, ""},
		{"unknown, transient again", events.OpDo, &Record{State: StateUnknown, Interrupted: true}, OutcomeRetry, StateRunning, StateUnknown, true, ""},
		{"takeover ok", events.OpDo, &Record{State: StateRunning}, OutcomeOK, StateRunning, StateDone, false, `{"seat":"12A"}`},
		{"undo ok", events.OpUndo, &Record{State: StateDone, Output: out}, OutcomeOK, StateUndoing, StateUndone, false, `{"seat":"12A"}`},
		{"undo fails: still done", events.OpUndo, &Record{State: StateDone, Output: out}, OutcomeRetry, StateUndoing, StateDone, false, `{"seat":"12A"}`},
		{"undo of interrupted run fails", events.OpUndo, &Record{State: StateRunning}, OutcomePermanent, StateUndoing, StateUnknown, true, ""},
		{"interrupted undo fails again", events.OpUndo, &Record{State: StateUndoing, Output: out}, OutcomeRetry, StateUndoing, StateUndoing, false, `{"seat":"12A"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held := Acquired(tt.op, 2, tt.prior, "me/1", "req", now.Add(time.Second), now)
			if held.State != tt.held || held.Owner != "me/1" || !held.LockUntil.Equal(now.Add(time.Second)) {
				t.Fatalf("acquired %+v, want state %s locked by me/1", held, tt.held)
			}
			if !held.Locked(now) {
				t.Fatal("acquired record is not locked")
			}
			next := Settled(tt.op, tt.prior, held, tt.kind, out, perm, "req", now)
			if tt.want == "" {
				if next != nil {
					t.Fatalf("settled %+v, want the key deleted", next)
				}
				return
			}
			if next == nil {
				t.Fatalf("settled: key deleted, want state %s", tt.want)
			}
			if next.State != tt.want || next.Interrupted != tt.interrupted || string(next.Output) != tt.output {
				t.Fatalf("settled %+v, want state %s, interrupted %v, output %s", next, tt.want, tt.interrupted, tt.output)
			}
			if next.Owner != "" || next.Locked(now.Add(-time.Hour)) {
				t.Fatalf("settled %+v still holds a lock", next)
			}
			if (next.State == StateFailed || next.State == StateRetry) && (next.Error == nil || *next.Error != *perm) {
				t.Fatalf("%s record has error %v, want %v", next.State, next.Error, perm)
			}
			if next.State == StateRetry && next.Attempt != 2 {
				t.Fatalf("retry record for attempt %d, want 2", next.Attempt)
			}
			// Every settled record must make sense to decide.
			if v := Decide(events.OpDo, 2, next, now); v == VerdictCorrupt || v == VerdictWait {
				t.Fatalf("Decide(do) on settled %s = %d", next.State, v)
			}
		})
	}
}

func TestBarrierKey(t *testing.T) {
	t.Parallel()
	kvKey := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	saga := "0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e"
	seen := map[string]string{}
	for _, node := range []string{"n", "vm/disk", "vm/@start", "with space", "ünïcödé", "a.b", "a_b", "..", "*", ">"} {
		key := Key("hotels.book", saga, node)
		if !kvKey.MatchString(key) || strings.Contains(key, "..") || strings.HasSuffix(key, ".") {
			t.Errorf("Key(%q) = %q, not a valid KV key", node, key)
		}
		if prev, ok := seen[key]; ok {
			t.Errorf("nodes %q and %q share key %q", prev, node, key)
		}
		seen[key] = node
		enc, _ := strings.CutPrefix(key, "hotels_book-bca0c1e1."+saga+".")
		if dec, err := base64.RawURLEncoding.DecodeString(enc); err != nil || string(dec) != node {
			t.Errorf("key %q does not decode back to %q", key, node)
		}
	}
}
