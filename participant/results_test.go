package participant

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/events"
)

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
	if c.Name == "" || c.Logger == nil || c.Concurrency != DefaultConcurrency || c.AckWait != 5*time.Second || c.LockTTL != c.AckWait {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c := (Config{AckWait: time.Second}).withDefaults(); c.LockTTL != time.Second {
		t.Fatalf("LockTTL default %s, want AckWait", c.LockTTL)
	}
}
