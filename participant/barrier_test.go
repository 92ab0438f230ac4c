package participant

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	rec := func(s barrierState, lock time.Time) *record { return &record{State: s, LockUntil: lock} }
	tests := []struct {
		name string
		rec  *record
		do   verdict
		undo verdict
	}{
		{"absent", nil, verdictRun, verdictTombstone},
		{"running, lock live", rec(stateRunning, live), verdictWait, verdictWait},
		{"running, lock expired", rec(stateRunning, expired), verdictRun, verdictRun},
		{"running, lock expires now", rec(stateRunning, now), verdictRun, verdictRun},
		{"unknown", rec(stateUnknown, time.Time{}), verdictRun, verdictRun},
		{"done", rec(stateDone, time.Time{}), verdictReplyOutput, verdictRun},
		{"failed", rec(stateFailed, time.Time{}), verdictReplyError, verdictTombstone},
		// The requests below are for attempt 2.
		{"this attempt failed transiently", &record{State: stateRetry, Attempt: 2}, verdictReplyError, verdictTombstone},
		{"a later attempt failed transiently: this one is stale", &record{State: stateRetry, Attempt: 3}, verdictReplyError, verdictTombstone},
		{"an earlier attempt failed transiently", &record{State: stateRetry, Attempt: 1}, verdictRun, verdictTombstone},
		{"undoing, lock live", rec(stateUndoing, live), verdictRefuse, verdictWait},
		{"undoing, lock expired", rec(stateUndoing, expired), verdictRefuse, verdictRun},
		{"undoing, released", rec(stateUndoing, time.Time{}), verdictRefuse, verdictRun},
		{"undone", rec(stateUndone, time.Time{}), verdictRefuse, verdictUndone},
		{"tombstone", rec(stateTombstone, time.Time{}), verdictRefuse, verdictUndone},
		{"from a newer version", rec("paused", live), verdictCorrupt, verdictCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(events.OpDo, 2, tt.rec, now); got != tt.do {
				t.Errorf("do: got verdict %d, want %d", got, tt.do)
			}
			if got := decide(events.OpUndo, 2, tt.rec, now); got != tt.undo {
				t.Errorf("undo: got verdict %d, want %d", got, tt.undo)
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
		prior *record
		kind  outcomeKind
		// want is the state after (empty: key deleted); interrupted is
		// what the lock and the record after say about earlier runs.
		held        barrierState
		want        barrierState
		interrupted bool
		output      string
	}{
		{"do ok", events.OpDo, nil, outcomeOK, stateRunning, stateDone, false, `{"seat":"12A"}`},
		{"do permanent", events.OpDo, nil, outcomePermanent, stateRunning, stateFailed, false, ""},
		{"do transient: the answer is kept", events.OpDo, nil, outcomeRetry, stateRunning, stateRetry, false, ""},
		{"do stopped: as if never run", events.OpDo, nil, outcomeStopped, stateRunning, "", false, ""},
		{"next attempt after a transient failure", events.OpDo, &record{State: stateRetry, Attempt: 1}, outcomeOK, stateRunning, stateDone, false, `{"seat":"12A"}`},
		{"takeover transient: maybe ran", events.OpDo, &record{State: stateRunning}, outcomeRetry, stateRunning, stateUnknown, true, ""},
		{"unknown, transient again", events.OpDo, &record{State: stateUnknown, Interrupted: true}, outcomeRetry, stateRunning, stateUnknown, true, ""},
		{"takeover ok", events.OpDo, &record{State: stateRunning}, outcomeOK, stateRunning, stateDone, false, `{"seat":"12A"}`},
		{"undo ok", events.OpUndo, &record{State: stateDone, Output: out}, outcomeOK, stateUndoing, stateUndone, false, `{"seat":"12A"}`},
		{"undo fails: still done", events.OpUndo, &record{State: stateDone, Output: out}, outcomeRetry, stateUndoing, stateDone, false, `{"seat":"12A"}`},
		{"undo of interrupted run fails", events.OpUndo, &record{State: stateRunning}, outcomePermanent, stateUndoing, stateUnknown, true, ""},
		{"interrupted undo fails again", events.OpUndo, &record{State: stateUndoing, Output: out}, outcomeRetry, stateUndoing, stateUndoing, false, `{"seat":"12A"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held := acquired(tt.op, 2, tt.prior, "me/1", "req", now.Add(time.Second), now)
			if held.State != tt.held || held.Owner != "me/1" || !held.LockUntil.Equal(now.Add(time.Second)) {
				t.Fatalf("acquired %+v, want state %s locked by me/1", held, tt.held)
			}
			if !held.locked(now) {
				t.Fatal("acquired record is not locked")
			}
			next := settled(tt.op, tt.prior, held, tt.kind, out, perm, "req", now)
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
			if next.Owner != "" || next.locked(now.Add(-time.Hour)) {
				t.Fatalf("settled %+v still holds a lock", next)
			}
			if (next.State == stateFailed || next.State == stateRetry) && (next.Error == nil || *next.Error != *perm) {
				t.Fatalf("%s record has error %v, want %v", next.State, next.Error, perm)
			}
			if next.State == stateRetry && next.Attempt != 2 {
				t.Fatalf("retry record for attempt %d, want 2", next.Attempt)
			}
			// Every settled record must make sense to decide.
			if v := decide(events.OpDo, 2, next, now); v == verdictCorrupt || v == verdictWait {
				t.Fatalf("decide(do) on settled %s = %d", next.State, v)
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
		key := barrierKey(saga, node)
		if !kvKey.MatchString(key) || strings.Contains(key, "..") || strings.HasSuffix(key, ".") {
			t.Errorf("barrierKey(%q) = %q, not a valid KV key", node, key)
		}
		if prev, ok := seen[key]; ok {
			t.Errorf("nodes %q and %q share key %q", prev, node, key)
		}
		seen[key] = node
		enc, _ := strings.CutPrefix(key, saga+".")
		if dec, err := base64.RawURLEncoding.DecodeString(enc); err != nil || string(dec) != node {
			t.Errorf("key %q does not decode back to %q", key, node)
		}
	}
}

func TestErrorResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err   error
		kind  events.ErrorKind
		msg   string
		after time.Duration
	}{
		{errors.New("x"), events.ErrorTransient, "x", 0},
		{Permanent(errors.New("declined")), events.ErrorPermanent, "declined", 0},
		{Permanent(nil), events.ErrorPermanent, "permanent failure", 0},
		{fmt.Errorf("wrapped: %w", Permanent(errors.New("declined"))), events.ErrorPermanent, "wrapped: declined", 0},
		{RetryAfter(3*time.Second, errors.New("slow down")), events.ErrorTransient, "slow down", 3 * time.Second},
		{RetryAfter(time.Second, nil), events.ErrorTransient, "retry after 1s", time.Second},
		{Permanent(RetryAfter(time.Second, errors.New("both"))), events.ErrorPermanent, "both", 0},
		{&UnknownNodeError{Node: "a", RequestNode: "b"}, events.ErrorPermanent, `looked up "a"`, 0},
		{fmt.Errorf("%w params", ErrDecode), events.ErrorPermanent, "cannot decode params", 0},
		{&panicError{value: "boom"}, events.ErrorTransient, "handler panicked: boom", 0},
	}
	for _, tt := range tests {
		res := errorResult(tt.err)
		if res.ok || res.err == nil || res.err.Kind != tt.kind || !strings.Contains(res.err.Message, tt.msg) || res.retryAfter != tt.after {
			t.Errorf("errorResult(%v) = %+v (%v), want %s %q after %s", tt.err, res, res.err, tt.kind, tt.msg, tt.after)
		}
	}
	if !errors.Is(Permanent(nil), ErrPermanent) {
		t.Error("Permanent does not match ErrPermanent")
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]time.Duration{0: retryBase, 1: retryBase, 2: 2 * retryBase, 3: 4 * retryBase, 100: retryMax} {
		if got := retryDelay(n); got != want {
			t.Errorf("retryDelay(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	if c.Name == "" || c.Logger == nil || c.Concurrency != DefaultConcurrency || c.AckWait != 30*time.Second || c.LockTTL != c.AckWait {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c := (Config{AckWait: time.Second}).withDefaults(); c.LockTTL != time.Second {
		t.Fatalf("LockTTL default %s, want AckWait", c.LockTTL)
	}
}
