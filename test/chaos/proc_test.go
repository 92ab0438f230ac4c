//go:build unix

package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// procs are the child processes of one test, each running the jetsaga
// binary. When the test ends (t.Fatal included), every one still running
// is killed; if the test failed, the end of each one's output is printed.
// A child that exits without the test having killed it fails the test.
//
// Methods that take no *testing.T fail the test with t.Fatal and must be
// called from the test's goroutine.
type procs struct {
	t   *testing.T
	dir string // each process's output, one file per process

	mu    sync.Mutex
	all   []*proc
	extra []string // more log files whose end to print on failure
}

// tailLines is how much of each output a failed test prints.
const tailLines = 40

func newProcs(t *testing.T) *procs {
	ps := &procs{t: t, dir: logDir(t)}
	t.Cleanup(ps.cleanup)
	return ps
}

// logDir is where the test's child processes write: a directory under
// $JETSAGA_CHAOS_LOGS if set (kept), else a temporary one.
func logDir(t *testing.T) string {
	base := os.Getenv("JETSAGA_CHAOS_LOGS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+time.Now().Format("150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("child processes' output in %s", dir)
	return dir
}

// logFile creates a file in the log directory whose end is printed, like a
// child's output, if the test fails.
func (ps *procs) logFile(name string) *os.File {
	path := filepath.Join(ps.dir, name)
	f, err := os.Create(path)
	if err != nil {
		ps.t.Fatal(err)
	}
	ps.mu.Lock()
	ps.extra = append(ps.extra, path)
	ps.mu.Unlock()
	return f
}

// proc is a child process that can be killed, paused and restarted with the
// same arguments. Its output (stdout and stderr) goes to one file, each run
// after a header line.
type proc struct {
	ps      *procs
	name    string
	args    []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the current run has ended
	killing bool          // the current run is being killed by the test
	runs    int
	offset  int64 // where the current run's output starts in the log
	exits   []string
}

// start starts a child process called name (in logs) running jetsaga with
// args.
func (ps *procs) start(name string, args ...string) *proc {
	ps.t.Helper()
	p := &proc{ps: ps, name: name, args: args, logPath: filepath.Join(ps.dir, name+".log")}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	if err := p.run(); err != nil {
		ps.t.Fatal(err)
	}
	return p
}

func (p *proc) run() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("%s: start: still running", p.name)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own descriptor
	p.runs++
	fmt.Fprintf(f, "=== %s run %d: jetsaga %s\n", time.Now().Format("15:04:05.000"), p.runs, strings.Join(p.args, " "))
	if p.offset, err = f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	cmd := exec.Command(jetsagaBin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.killing = cmd, exited, false
	run := p.runs
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.killing {
			p.exits = append(p.exits, fmt.Sprintf("run %d exited on its own: %v", run, err))
		}
		close(exited)
	}()
	return nil
}

// running reports whether the current run has not exited.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill kills the process with SIGKILL (a crash: no cleanup, no flush) and
// waits until it has exited.
func (p *proc) kill() {
	p.ps.t.Helper()
	if err := p.killWait(10 * time.Second); err != nil {
		p.ps.t.Fatal(err)
	}
}

func (p *proc) killWait(timeout time.Duration) error {
	p.mu.Lock()
	exited := p.exited
	if exited == nil { // never started
		p.mu.Unlock()
		return nil
	}
	select {
	case <-exited:
		p.mu.Unlock()
		return nil
	default:
	}
	p.killing = true
	err := p.cmd.Process.Signal(syscall.SIGKILL)
	p.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: kill: %w", p.name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-t.C:
		return fmt.Errorf("%s: still running %s after SIGKILL", p.name, timeout)
	}
}

// discard kills the process, if it still runs, and forgets how it ended:
// for a start that is abandoned and tried again (a port taken, say).
func (p *proc) discard() {
	p.ps.t.Helper()
	if err := p.killWait(10 * time.Second); err != nil {
		p.ps.t.Fatal(err)
	}
	p.mu.Lock()
	p.exits = nil
	p.mu.Unlock()
}

// pause stops the process with SIGSTOP: it keeps its connections and
// state, and does nothing until resume.
func (p *proc) pause() {
	p.ps.t.Helper()
	p.signal(syscall.SIGSTOP)
}

// resume continues a paused process (SIGCONT).
func (p *proc) resume() {
	p.ps.t.Helper()
	p.signal(syscall.SIGCONT)
}

func (p *proc) signal(sig syscall.Signal) {
	p.ps.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.exited:
		p.ps.t.Fatalf("%s: %v: not running\n%s", p.name, sig, p.tail(tailLines))
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.ps.t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

// restart starts the process again with the same arguments; it must have
// been killed.
func (p *proc) restart() {
	p.ps.t.Helper()
	if err := p.run(); err != nil {
		p.ps.t.Fatal(err)
	}
}

// waitOutput waits until the current run has written a line containing s,
// and returns the line. It fails if the process exits first.
func (p *proc) waitOutput(s string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		p.mu.Lock()
		offset, exited := p.offset, p.exited
		p.mu.Unlock()
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			return "", err
		}
		if int64(len(b)) >= offset {
			out := string(b[offset:])
			if i := strings.Index(out, s); i >= 0 {
				start := strings.LastIndexByte(out[:i], '\n') + 1
				line, _, _ := strings.Cut(out[start:], "\n")
				return line, nil
			}
		}
		select {
		case <-exited:
			return "", fmt.Errorf("%s exited before printing %q:\n%s", p.name, s, p.tail(tailLines))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not print %q within %s:\n%s", p.name, s, timeout, p.tail(tailLines))
		}
		t := time.NewTimer(wait)
		<-t.C
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// tail returns the last n lines of the process's output, all runs.
func (p *proc) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\t" + string(bytes.Join(lines, []byte("\n\t")))
}

// cleanup kills every child still running, reports children that exited
// on their own, and prints every output's end if the test failed.
func (ps *procs) cleanup() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	extra := append([]string(nil), ps.extra...)
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Go(func() {
			if err := p.killWait(10 * time.Second); err != nil {
				ps.t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, p := range all {
		p.mu.Lock()
		exits := p.exits
		p.mu.Unlock()
		if len(exits) > 0 {
			ps.t.Errorf("%s exited without being killed (a crash?): %s", p.name, strings.Join(exits, "; "))
		}
	}
	if !ps.t.Failed() {
		return
	}
	for _, p := range all {
		ps.t.Logf("%s (jetsaga %s), last lines of %s:\n%s", p.name, strings.Join(p.args, " "), p.logPath, p.tail(tailLines))
	}
	for _, path := range extra {
		ps.t.Logf("last lines of %s:\n%s", path, tailFile(path, tailLines))
	}
}
