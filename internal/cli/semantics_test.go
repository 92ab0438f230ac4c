package cli

import (
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/client"
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
