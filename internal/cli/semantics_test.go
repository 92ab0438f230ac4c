package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

func TestSignalCommand(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.start("approval.yaml", "-params", `{"amount": 0}`)
	e.waitRunning(id)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"signal", id, "nope"}, `signal refused: saga ` + id + ` has no node "nope" (its await nodes: approval)`},
		{[]string{"signal", id, "book"}, `is a action node; signals are for await nodes`},
		{[]string{"signal", id, "approval", "--data", "{"}, `--data must be JSON`},
		{[]string{"signal", id, "approval", "--data", "1", "--reject", "no"}, `give --data or --reject, not both`},
	} {
		code, _, errs := e.run(c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
	code, out, errs := e.run("signal", id, "approval", "--data", `{"by":"ann"}`, "--sender", "ann", "--wait")
	if code != 0 || !strings.Contains(out, "✓ succeeded") || !strings.Contains(out, "⤼ skipped") || !strings.Contains(out, "when params.amount > 0 was false") {
		t.Fatalf("signal: code %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = e.run("signal", id, "approval")
	if code == 0 || !strings.Contains(errs, "has finished (succeeded)") {
		t.Fatalf("signal for a finished saga: code %d %s", code, errs)
	}

	id = e.start("approval.yaml", "-params", `{"amount": 5}`)
	e.waitRunning(id)
	code, out, errs = e.run("signal", id, "approval", "--reject", "over budget", "--wait")
	if code != 0 || !strings.Contains(out, "↩ unwound") || !strings.Contains(out, "rejected: signal") {
		t.Fatalf("reject: code %d\n%s\n%s", code, out, errs)
	}
}

func TestRetrySkipAndAbortOfAWaitingSaga(t *testing.T) {
	t.Parallel()
	e := setup(t)
	waiting := func() string {
		id := e.start("waiting.yaml", "-params", `{"fixed": false}`)
		if s := e.wait(id); s.Status != client.StatusWaiting {
			t.Fatalf("saga %s, want waiting", s.Status)
		}
		return id
	}
	id := waiting()
	// The coordinator counts the saga once it has applied the decision the
	// log already shows: poll.
	natstest.Eventually(t, 10*time.Second, func() error {
		code, out, _ := e.run("status")
		if code != 0 || !strings.Contains(out, "for an operator  0 stuck (a failed undo), 1 waiting (a failed node)") {
			return fmt.Errorf("status: code %d\n%s", code, out)
		}
		return nil
	})
	code, out, _ := e.run("show", id)
	if code != 0 || !strings.Contains(out, "⏸ waiting") || !strings.Contains(out, "jetsaga skip "+id+" fix --output JSON --reason R") {
		t.Fatalf("show: code %d\n%s", code, out)
	}
	code, _, errs := e.run("retry", id, "a")
	if code == 0 || !strings.Contains(errs, "(failed nodes the saga waits on: fix)") {
		t.Fatalf("retry of a node that did not fail: code %d %s", code, errs)
	}
	code, out, errs = e.run("retry", id, "fix", "--params", `{"fixed":true}`, "--reason", "repaired", "--wait")
	if code != 0 || !strings.Contains(out, "✓ succeeded") {
		t.Fatalf("retry: code %d\n%s\n%s", code, out, errs)
	}

	id = waiting()
	code, _, errs = e.run("skip", id, "fix", "--output", `{"manual":true}`)
	if code == 0 || !strings.Contains(errs, "--reason is required: the log records why the node counts as succeeded") {
		t.Fatalf("skip without a reason: code %d %s", code, errs)
	}
	code, out, errs = e.run("skip", id, "fix", "--output", `{"manual":true}`, "--reason", "done by hand", "--wait")
	if code != 0 || !strings.Contains(out, "✓ succeeded") || !strings.Contains(out, "skipped: done by hand") {
		t.Fatalf("skip: code %d\n%s\n%s", code, out, errs)
	}

	id = waiting()
	code, out, errs = e.run("abort", id, "--reason", "give up", "--wait")
	if code != 0 || !strings.Contains(out, "↩ unwound") {
		t.Fatalf("abort: code %d\n%s\n%s", code, out, errs)
	}
}

// The expense example runs in jetsaga dev, driven from the command line as
// its README says: start it, approve it with a signal, and it is paid.
func TestDevRunsTheExpenseExample(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"dev", "-dir", t.TempDir(), "-port", "-1", "-demo=false"}, &out, &errb)
	}()
	var url string
	natstest.Eventually(t, 30*time.Second, func() error {
		if s := out.String(); strings.Contains(s, "Ready.") {
			i := strings.Index(s, "nats://")
			url = strings.Fields(s[i:])[0]
			return nil
		}
		return os.ErrNotExist
	})
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("dev exited %d: %s", code, errb.String())
		}
	}()
	if !strings.Contains(out.String(), "jetsaga start -f examples/expense/expense.yaml") {
		t.Fatalf("dev does not say how to try the expense saga:\n%s", out.String())
	}
	code, o, errs := run(t, "start", "-server", url, "-f", "../../examples/expense/expense.yaml",
		"-params", `{"claim":"c-1","employee":"ada","amount":120,"email":"ada@example.com"}`)
	id := strings.TrimSpace(o)
	if code != 0 {
		t.Fatalf("start: code %d %s", code, errs)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		code, o, _ := run(t, "show", "-server", url, id)
		if code != 0 || !strings.Contains(o, "waits for expense.manager_approved") {
			return fmt.Errorf("manager not waiting yet:\n%s", o)
		}
		return nil
	})
	code, o, errs = run(t, "signal", "-server", url, id, "manager", "--data", `{"by":"grace"}`, "--wait")
	if code != 0 || !strings.Contains(o, "✓ succeeded") || !strings.Contains(o, "pivot     past pay") {
		t.Fatalf("signal: code %d\n%s\n%s", code, o, errs)
	}
}

func TestValidateReportsWaitsConditionsAndPivots(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`name: bad
nodes:
  - {name: a, kind: action, action: svc.a}
  - {name: pay, kind: action, action: svc.pay, after: [a], pivot: true}
  - {name: side, kind: action, action: svc.side, undo: svc.unside, after: [a]}
  - {name: ok, kind: await, after: [pay]}
  - {name: cond, kind: action, action: svc.c, after: [pay], when: "outputs.side.x >"}
`), 0o644)
	code, _, errs := run(t, "validate", "-f", bad)
	for _, want := range []string{`node "ok": an await node needs the event it waits for`, `node "cond": when "outputs.side.x >": ERROR`} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("validate: code %d, stderr lacks %q:\n%s", code, want, errs)
		}
	}
	// The pivot is checked on the whole graph, once each node is sound.
	os.WriteFile(bad, []byte(`name: bad
nodes:
  - {name: a, kind: action, action: svc.a}
  - {name: pay, kind: action, action: svc.pay, after: [a], pivot: true}
  - {name: side, kind: action, action: svc.side, undo: svc.unside, after: [a]}
`), 0o644)
	code, _, errs = run(t, "validate", "-f", bad)
	if want := `node "side": runs beside pivot "pay"`; code != 1 || !strings.Contains(errs, want) {
		t.Errorf("validate: code %d, stderr lacks %q:\n%s", code, want, errs)
	}
	code, out, errs := run(t, "validate", "-f", "../../examples/expense/expense.yaml")
	for _, want := range []string{"deadline 168h0m0s, then unwind", "await expense.manager_approved / undo expense.withdrawn", "when params.amount > 1000", "payouts.transfer [pivot]"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("validate expense.yaml: code %d, stdout lacks %q:\n%s%s", code, want, out, errs)
		}
	}
}

// watch of an id no saga has says so at once, and ends as show does.
func TestWatchOfAnUnknownSaga(t *testing.T) {
	t.Parallel()
	e := setup(t)
	code, out, errs := e.run("watch", "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b", "-timeout", "1s")
	if code != 1 || out != "" || !strings.Contains(errs, "no saga 0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b yet: waiting up to 1s") ||
		!strings.Contains(errs, "jetsaga watch: no saga 0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b: it has no log (check the id with jetsaga list)") {
		t.Fatalf("watch: code %d stdout %q stderr %q", code, out, errs)
	}
}

// Abort wins over pause: a paused saga aborted unwinds without a resume.
func TestAbortOfAPausedSaga(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.start("hold.yaml")
	e.waitRunning(id)
	if code, _, errs := e.run("pause", id, "--reason", "look"); code != 0 {
		t.Fatalf("pause: %d %s", code, errs)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if s, err := e.cl.Status(context.Background(), id); err != nil || !s.Paused {
			return fmt.Errorf("not paused yet: %v", err)
		}
		return nil
	})
	code, out, errs := e.run("abort", id, "--reason", "give up")
	if code != 0 || !strings.Contains(out, "the saga was paused: the abort resumes it, so that it unwinds") {
		t.Fatalf("abort: code %d\n%s\n%s", code, out, errs)
	}
	if s := e.wait(id); s.Status != client.StatusUnwound {
		t.Fatalf("saga %s", s.Status)
	}
}

// show tells who paused a saga and why, and every operator's command.
func TestShowTellsOperatorsAndReasons(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.start("hold.yaml")
	e.waitRunning(id)
	if code, _, errs := e.run("pause", id, "--reason", "maintenance window", "--operator", "ann"); code != 0 {
		t.Fatalf("pause: %d %s", code, errs)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		code, out, _ := e.run("show", id)
		if code != 0 || !strings.Contains(out, "paused by ann: maintenance window") || !strings.Contains(out, "operator.pause by ann: maintenance window") {
			return fmt.Errorf("show:\n%s", out)
		}
		return nil
	})
}

// A definition file's errors say whether it was read as YAML or JSON.
func TestDefinitionErrorsNameTheirFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	y := filepath.Join(dir, "bad.yaml")
	j := filepath.Join(dir, "bad.json")
	os.WriteFile(y, []byte("name: x\nnodes:\n  - {name: a, kind: action, action: x.y, colour: red}\n"), 0o644)
	os.WriteFile(j, []byte(`{"name": "x", "nodes": [{"name": "a", "kind": "action", "action": "x.y"},]}`), 0o644)
	code, _, errs := run(t, "validate", "-f", y)
	if code != 1 || !strings.Contains(errs, "bad.yaml: YAML: unknown field \"colour\"") || strings.Contains(errs, "json") {
		t.Errorf("yaml: code %d %q", code, errs)
	}
	code, _, errs = run(t, "validate", "-f", j)
	if code != 1 || !strings.Contains(errs, "bad.json: JSON: invalid character") {
		t.Errorf("json: code %d %q", code, errs)
	}
}

// The trip demo runs once per data directory, not on every start.
func TestDevRunsItsDemoOncePerDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, want := range []string{"trip for Ada to Lisbon", "the trip demo ran on this data directory before"} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb syncBuffer
		done := make(chan int)
		go func() { done <- Run(ctx, []string{"dev", "-dir", dir, "-port", "-1", "-ui-addr", ""}, &out, &errb) }()
		natstest.Eventually(t, 60*time.Second, func() error {
			if !strings.Contains(out.String(), "Ready.") {
				return os.ErrNotExist
			}
			return nil
		})
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("run %d: dev exited %d: %s", i+1, code, errb.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("run %d: dev's output lacks %q:\n%s", i+1, want, out.String())
		}
	}
}

// Look-up by idempotency key and metadata; paused sagas say so.
func TestListAndShowByKeyAndMetadata(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a := e.start("ok.yaml", "--key", "order-17", "--meta", "team=blue")
	b := e.start("ok.yaml", "--meta", "team=red")
	e.wait(a)
	e.wait(b)
	code, out, errs := e.run("show", "--key", "order-17")
	if code != 0 || !strings.Contains(out, a) {
		t.Fatalf("show --key: code %d\n%s%s", code, out, errs)
	}
	if code, _, errs := e.run("show", "--key", "order-17", a); code != 2 || !strings.Contains(errs, "not both") {
		t.Fatalf("show --key with an id: code %d %s", code, errs)
	}
	for _, c := range []struct {
		args []string
		in   string
		out  string
	}{
		{[]string{"--key", "order-17"}, a, b},
		{[]string{"--meta", "team=red"}, b, a},
	} {
		// A finished saga is listed from the archive, written just after
		// its log ends: poll.
		natstest.Eventually(t, 10*time.Second, func() error {
			code, out, errs := e.run(append([]string{"list"}, c.args...)...)
			if code != 0 || !strings.Contains(out, c.in) || strings.Contains(out, c.out) || !strings.Contains(out, "NODE AT FAULT") {
				return fmt.Errorf("list %v: code %d\n%s%s", c.args, code, out, errs)
			}
			return nil
		})
	}
	id := e.start("hold.yaml")
	e.waitRunning(id)
	if code, _, errs := e.run("pause", id, "--reason", "look"); code != 0 {
		t.Fatalf("pause: %s", errs)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		code, out, _ := e.run("list", "--status", "paused")
		if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "running (paused)") || strings.Contains(out, a) {
			return fmt.Errorf("list --status paused:\n%s", out)
		}
		return nil
	})
}

// An operator's command for every saga a filter selects: a dry run first,
// then with --yes a progress bar and the failures listed.
func TestBulkOperatorCommands(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var stuck []string
	for range 3 {
		id := e.start("stuck.yaml", "--meta", "batch=7")
		stuck = append(stuck, id)
	}
	other := e.start("ok.yaml", "--meta", "batch=7")
	for _, id := range stuck {
		if s := e.wait(id); s.Status != client.StatusStuck {
			t.Fatalf("saga %s", s.Status)
		}
	}
	e.wait(other)
	// The index says stuck once the coordinator has written the summary,
	// just after the log says so: poll.
	natstest.Eventually(t, 10*time.Second, func() error {
		code, out, errs := e.run("abandon", "--status", "stuck", "--meta", "batch=7", "--reason", "cleanup")
		if code != 0 || !strings.Contains(out, "would abandon 3 saga(s)") || !strings.Contains(out, "dry run: add --yes") {
			return fmt.Errorf("dry run: code %d\n%s%s", code, out, errs)
		}
		return nil
	})
	// Abort fails for stuck sagas: each failure is listed, exit 1.
	code, out, errs := e.run("abort", "--status", "stuck", "--reason", "x", "--yes")
	if code != 1 || strings.Count(out, "failed: ") != 3 || !strings.Contains(out, "only a running (or waiting) saga can be aborted") || !strings.Contains(errs, "3/3, 3 failed") {
		t.Fatalf("bulk abort of stuck sagas: code %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = e.run("abandon", "--status", "stuck", "--meta", "batch=7", "--reason", "cleanup", "--yes")
	if code != 0 || !strings.Contains(out, "abandon sent for 3 of 3 saga(s)") || !strings.Contains(errs, "[##############################] 3/3") {
		t.Fatalf("bulk abandon: code %d\n%s\n%s", code, out, errs)
	}
	for _, id := range stuck {
		s, err := e.cl.WaitFor(context.Background(), id, func(s *client.Saga) bool { return s.Finished() })
		if err != nil || s.Status != client.StatusAbandoned {
			t.Fatalf("saga %s: %v", id, err)
		}
	}
	if code, _, errs := e.run("abort"); code != 2 || !strings.Contains(errs, "or filters (--status") {
		t.Fatalf("abort with nothing: code %d %s", code, errs)
	}
}

// show fits outputs to the terminal's width ($COLUMNS here), not 80
// columns whatever the terminal.
func TestShowFitsTheTerminal(t *testing.T) {
	e := setup(t) // not parallel: it sets COLUMNS
	id := e.start("ok.yaml", "--params", `{"note":"`+strings.Repeat("x", 150)+`"}`)
	e.wait(id)
	for _, c := range []struct {
		cols string
		max  int
	}{{"80", 80}, {"220", 220}} {
		t.Setenv("COLUMNS", c.cols)
		code, out, _ := e.run("show", id)
		longest := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "params") || strings.Contains(l, "├─") || strings.Contains(l, "└─") {
				longest = max(longest, len([]rune(l)))
			}
		}
		if code != 0 || longest > c.max || (c.max == 220 && longest < 150) {
			t.Errorf("COLUMNS=%s: longest line %d\n%s", c.cols, longest, out)
		}
	}
}

// Shell completion: commands, and each command's flags, from bash itself.
func TestCompletion(t *testing.T) {
	t.Parallel()
	code, script, errs := run(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion: %d %s", code, errs)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	complete := func(words ...string) string {
		t.Helper()
		prog := script + fmt.Sprintf("\nCOMP_WORDS=(%s); COMP_CWORD=%d; _jetsaga; echo \"${COMPREPLY[*]}\"\n", strings.Join(words, " "), len(words)-1)
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("jetsaga", "sig"); got != "signal" {
		t.Errorf("jetsaga sig<TAB> = %q", got)
	}
	if got := complete("jetsaga", "signal", "--re"); got != "--reject" {
		t.Errorf("jetsaga signal --re<TAB> = %q", got)
	}
	if code, _, errs := run(t, "completion", "fish"); code != 2 || !strings.Contains(errs, "want bash or zsh") {
		t.Errorf("completion fish: %d %s", code, errs)
	}
	if code, out, _ := run(t, "completion", "zsh"); code != 0 || !strings.HasPrefix(out, "autoload -U +X bashcompinit") {
		t.Errorf("completion zsh: %d %q", code, out[:min(len(out), 60)])
	}
}

// jetsaga ui serves the console, read-only unless --allow-actions.
func TestUICommand(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, c := range []struct {
		args []string
		want string
	}{{nil, "read-only"}, {[]string{"--allow-actions", "--operator", "ann"}, "actions on, as ann"}} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb syncBuffer
		done := make(chan int)
		go func() {
			done <- Run(ctx, append([]string{"ui", "-server", e.url, "--addr", "127.0.0.1:0", "--log-level", "warn"}, c.args...), &out, &errb)
		}()
		var url string
		natstest.Eventually(t, 20*time.Second, func() error {
			s := out.String()
			i := strings.Index(s, "http://")
			if i < 0 {
				return os.ErrNotExist
			}
			url = strings.Fields(s[i:])[0]
			return nil
		})
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if code := <-done; code != 0 || resp.StatusCode != 200 || !strings.Contains(string(body), c.want) || !strings.Contains(out.String(), c.want) {
			t.Fatalf("ui %v: code %d, HTTP %d, output %q", c.args, code, resp.StatusCode, out.String())
		}
	}
}
