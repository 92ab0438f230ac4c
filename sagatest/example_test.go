package sagatest_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/sagatest"
)

// rooms is the system under test: hotel rooms booked by idempotency key.
type rooms struct {
	mu     sync.Mutex
	booked map[string]string // idempotency key → guest
}

func (r *rooms) book(_ context.Context, req *participant.Request) (any, error) {
	var p struct{ Guest string }
	if err := req.DecodeParams(&p); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.booked[req.IdempotencyKey] = p.Guest // idempotent: a repeat books the same room
	return map[string]string{"guest": p.Guest}, nil
}

func (r *rooms) cancel(_ context.Context, req *participant.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.booked, req.IdempotencyKey) // idempotent: cancelling twice is fine
	return nil, nil
}

// guests is what the hooks capture: who has a room, without keys (they
// hold the saga id, which differs from run to run).
func (r *rooms) guests(testing.TB) any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(slices.Sorted(maps.Values(r.booked)))
}

// In a test file this is:
//
//	func TestStay(t *testing.T) {
//		k := sagatest.New(t)
//		...
//	}
func Example() {
	t := &exampleT{} // stands in for the *testing.T of a real test
	defer t.cleanup()

	hotel := &rooms{booked: map[string]string{}}
	stay := saga.New("stay").
		Then(saga.Action("room", "hotel.book").Undo("hotel.cancel")).
		Then(saga.Action("breakfast", "hotel.book").Undo("hotel.cancel")).
		MustBuild()

	k := sagatest.New(t)
	k.Register("hotel.book", hotel.book, hotel.cancel)
	params := func() any { return map[string]string{"guest": "ada"} }
	hooks := sagatest.Hooks{Before: hotel.guests}
	k.ActionFailureCanUnwind(stay, params, hooks)
	k.ActionFailureCanUnwindIdempotently(stay, params, hooks)
	k.NoStuckUndos()

	fmt.Println("failed:", t.Failed())
	// Output: failed: false
}

// exampleT is the part of testing.TB a kit uses, for an example (which
// has no *testing.T): failures are printed.
type exampleT struct {
	testing.TB
	failed   bool
	cleanups []func()
	dirs     []string
}

func (t *exampleT) Helper()             {}
func (t *exampleT) Name() string        { return "Example" }
func (t *exampleT) Failed() bool        { return t.failed }
func (t *exampleT) Logf(string, ...any) {}
func (t *exampleT) Errorf(format string, args ...any) {
	t.failed = true
	fmt.Printf(format+"\n", args...)
}
func (t *exampleT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic("fatal")
}
func (t *exampleT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "sagatest-example")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.dirs = append(t.dirs, dir)
	return dir
}
func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}
