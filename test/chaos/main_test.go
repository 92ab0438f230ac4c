//go:build unix

// Package chaos runs jetsaga under faults and checks, once everything has
// settled, that no saga was harmed: coordinators (and NATS nodes) run as
// child processes of the jetsaga binary so they can be killed for real
// (SIGKILL) and paused (SIGSTOP/SIGCONT), while the test process starts
// sagas at a steady rate and runs their participants with the Go SDK.
//
// Each scenario is a test: TestChaosCoordinatorKills,
// TestChaosNATSNodeKill, TestChaosPausedCoordinator. By default they run in
// a short mode (tens of sagas, a few faults, well under a minute each);
// JETSAGA_CHAOS=long runs them for many minutes (over a thousand sagas and
// dozens of faults each):
//
//	go test ./test/chaos/                                      # short
//	JETSAGA_CHAOS=long go test -timeout 2h -v ./test/chaos/    # long
//
// -short skips the suite. JETSAGA_CHAOS_SEED=n replays a run's random
// choices (the seed is in the log); JETSAGA_CHAOS_LOGS=dir keeps every
// child's output there (by default it is in a temporary directory, and
// the end of each is printed when a test fails).
//
// The invariants checked are in check_test.go; the workload (sagas,
// participants, the effects ledger) is in workload_test.go.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

// jetsagaBin is the jetsaga binary TestMain built, run by every child
// process; buildErr says why there is none.
var (
	jetsagaBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	flag.Parse()
	var dir string
	if !testing.Short() {
		dir, buildErr = buildJetsaga()
		if buildErr == nil {
			jetsagaBin = filepath.Join(dir, "jetsaga")
		}
	}
	natstest.MainWith(m, func() {
		stopSpawner()
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	})
}

// requireBinary skips the test in -short mode and fails it if the jetsaga
// binary could not be built.
func requireBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos tests run child processes for tens of seconds; skipped with -short")
	}
	if buildErr != nil {
		t.Fatalf("build the jetsaga binary: %v", buildErr)
	}
}

// buildJetsaga builds ./cmd/jetsaga of the module the test runs in into a
// new temporary directory and returns the directory.
func buildJetsaga() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "jetsaga-chaos-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// go test puts its own Go first in PATH.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "jetsaga"), "./cmd/jetsaga")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/jetsaga in %s: %w\n%s", root, err, out)
	}
	return dir, nil
}

// moduleRoot walks up from the working directory (the package's, under go
// test) to the go.mod of module github.com/jetsaga/jetsaga.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			first, _, _ := bytes.Cut(b, []byte("\n"))
			if strings.TrimSpace(string(first)) == "module github.com/jetsaga/jetsaga" {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module github.com/jetsaga/jetsaga above the working directory")
		}
		dir = parent
	}
}
