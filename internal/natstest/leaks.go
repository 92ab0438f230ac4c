package natstest

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs a package's tests (call it from TestMain) and then fails the
// run if goroutines started by the tests are still running: a server, a
// connection or a component nobody stopped. Goroutines get a few seconds to
// wind down first.
func Main(m *testing.M) { MainWith(m, nil) }

// MainWith is Main with a clean-up step run after the tests and before the
// check (stopping what the package's TestMain started, removing files).
func MainWith(m *testing.M, after func()) {
	code := m.Run()
	if after != nil {
		after()
	}
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "natstest: goroutines still running after the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to timeout for every goroutine but the test
// framework's and the runtime's to end, and returns the stacks of those
// that did not ("" if none).
func leakedGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		leaked := interestingGoroutines()
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		t := time.NewTimer(wait)
		<-t.C
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func interestingGoroutines() []string {
	buf := make([]byte, 2<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		stack := strings.TrimSpace(string(g))
		if stack == "" || ignoredGoroutine(stack) {
			continue
		}
		out = append(out, stack)
	}
	return out
}

func ignoredGoroutine(stack string) bool {
	for _, s := range []string{
		"natstest.interestingGoroutines", // the goroutine checking
		"testing.(*M).",                  // the test framework
		"testing.tRunner",
		"testing.runTests",
		"os/signal.signal_recv", // the runtime's
		"os/signal.loop",
		"runtime.ensureSigM",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
