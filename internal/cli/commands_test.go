package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

func TestStart(t *testing.T) {
	t.Parallel()
	e := setup(t)

	t.Run("wait for success", func(t *testing.T) {
		code, out, errs := e.run("start", "-f", e.file("ok.yaml"), "--params", `{"who":"ada"}`, "--meta", "team=travel", "--meta", "env=test", "--wait")
		if code != 0 {
			t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
		}
		for _, want := range []string{"status    ✓ succeeded", `params    {"who":"ada"}`, "metadata  env=test,team=travel", "├─ flight", "✓ succeeded", "after flight", "└─ car", "   ├─ pick", "   └─ pay", `{"ref":"hotel-do-1"}`} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("wait for an unwinding saga", func(t *testing.T) {
		code, out, errs := e.run("start", "-f", e.file("fail.yaml"), "--wait")
		if code != 1 || !strings.Contains(out, "↩ unwound") || !strings.Contains(out, "sold out") ||
			!strings.Contains(errs, "unwound: node pay failed (permanent: sold out)") || strings.Count(errs, "\n") != 1 {
			t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
		}
	})
	t.Run("idempotency key and json", func(t *testing.T) {
		var first struct{ ID string }
		code, out, errs := e.run("start", "-f", e.file("ok.yaml"), "--key", "order-17", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &first) != nil || first.ID != client.SagaIDForKey("order-17") {
			t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
		}
		if again := e.start("ok.yaml", "--key", "order-17"); again != first.ID {
			t.Fatalf("the same key started another saga: %s then %s", first.ID, again)
		}
		// The same key with another request is an error, not the other saga.
		for _, c := range []struct{ args []string }{
			{[]string{"-f", e.file("ok.yaml"), "--params", `{"who":"bo"}`}},
			{[]string{"-f", e.file("fail.yaml")}},
		} {
			code, out, errs := e.run(append(append([]string{"start"}, c.args...), "--key", "order-17")...)
			if code != 1 || out != "" || !strings.Contains(errs, `idempotency key "order-17" (saga `+first.ID+`) is already used by a start with a different`) {
				t.Fatalf("start %q with a used key: code %d\nstdout %s\nstderr %s", c.args, code, out, errs)
			}
		}
		id := uuid.NewString()
		if got := e.start("ok.yaml", "--id", id, "--params-file", writeFile(t, `{"n": 1}`)); got != id {
			t.Fatalf("--id %s started %s", id, got)
		}
		if s := e.wait(id); string(s.Params) != `{"n":1}` {
			t.Fatalf("params %s", s.Params)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"-f", e.file("ok.yaml"), "--params", `{"who":`}, 2, "--params is not valid JSON"},
			{[]string{"-f", e.file("ok.yaml"), "--params-file", writeFile(t, "{nope}")}, 1, "is not valid JSON"},
			{[]string{"-f", e.file("ok.yaml"), "--params", "{}", "--params-file", "x"}, 2, "not both"},
			{[]string{"-f", e.file("ok.yaml"), "--key", "k", "--id", uuid.NewString()}, 2, "not both"},
			{[]string{"-f", e.file("ok.yaml"), "--meta", "novalue"}, 2, "want key=value"},
			{[]string{"-f", e.file("ok.yaml"), "--id", "nope"}, 1, "invalid saga id"},
			{[]string{"--params", "{}"}, 2, "-f is required"},
			{[]string{"-f", filepath.Join(t.TempDir(), "missing.yaml")}, 1, "no such file"},
			{[]string{"-f", writeFile(t, "name: bad\nnodes:\n- {name: a, kind: action, action: svc.x, after: [nope]}\n- {name: b, kind: action, action: 'bad action'}\n")}, 1, `unknown node "nope"`},
		} {
			code, out, errs := e.run(append([]string{"start"}, c.args...)...)
			if code != c.code || !strings.Contains(errs, c.want) || out != "" {
				t.Errorf("start %q: code %d, want %d with %q\nstdout %s\nstderr %s", c.args, code, c.code, c.want, out, errs)
			}
			// An error is one line; a definition's problems one a line.
			if want := 1 + strings.Count(errs, "\n  - "); c.code == 1 && strings.Count(errs, "\n") != want {
				t.Errorf("start %q: the error is not %d lines: %q", c.args, want, errs)
			}
			if c.code == 2 && (strings.Count(errs, "\n") != 2 || !strings.Contains(errs, "-h for its flags")) {
				t.Errorf("start %q: a usage error is not the error and one line of help: %q", c.args, errs)
			}
		}
	})
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestList(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// Starts go to partitions that run concurrently: wait for the first two
	// before the third, so the third is the newest.
	ok1, ok2 := e.start("ok.yaml"), e.start("ok.yaml")
	e.wait(ok1)
	e.wait(ok2)
	failed := e.start("fail.yaml")
	e.wait(failed)
	// The index follows the log.
	natstest.Eventually(t, 10*time.Second, func() error {
		code, out, errs := e.run("list", "--status", "succeeded", "--json")
		var sums []client.Summary
		if code != 0 || json.Unmarshal([]byte(out), &sums) != nil {
			return fmt.Errorf("code %d %s %s", code, out, errs)
		}
		if len(sums) != 2 {
			return fmt.Errorf("%d sagas listed as succeeded", len(sums))
		}
		code, out, errs = e.run("list", "--status", "unwound", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &sums) != nil {
			return fmt.Errorf("code %d %s %s", code, out, errs)
		}
		if len(sums) != 1 {
			return fmt.Errorf("%d sagas listed as unwound", len(sums))
		}
		return nil
	})
	code, out, errs := e.run("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], failed) ||
		!strings.Contains(lines[1], "unwound") || !strings.Contains(lines[1], "pay") {
		t.Fatalf("list, newest first: code %d\n%s\n%s", code, out, errs)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--status", "unwound"}, []string{failed}},
		{[]string{"--name", "trip"}, []string{ok1, ok2}},
		{[]string{"--name", "trip", "--status", "unwound"}, nil},
		{[]string{"--since", "1h"}, []string{ok1, ok2, failed}},
		{[]string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, nil},
		{[]string{"--limit", "1"}, []string{failed}},
	} {
		code, out, errs := e.run(append([]string{"list", "--json"}, c.args...)...)
		var sums []client.Summary
		if code != 0 || json.Unmarshal([]byte(out), &sums) != nil {
			t.Fatalf("list %q: code %d %s %s", c.args, code, out, errs)
		}
		var ids []string
		for _, s := range sums {
			ids = append(ids, s.ID)
		}
		slices.Sort(ids)
		want := slices.Sorted(slices.Values(c.want))
		if !slices.Equal(ids, want) {
			t.Errorf("list %q: got %v, want %v", c.args, ids, want)
		}
	}
	if code, out, errs := e.run("list", "--limit", "2"); code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(errs, "the newest 2 of 3") {
		t.Errorf("limit: code %d\n%s\n%s", code, out, errs)
	}
	if code, out, _ := e.run("list", "--name", "nope"); code != 0 || out != "no sagas\n" {
		t.Errorf("empty list: code %d %q", code, out)
	}
	for _, args := range [][]string{{"--status", "done"}, {"--since", "yesterday"}, {"--limit", "-1"}, {"extra"}} {
		if code, _, errs := e.run(append([]string{"list"}, args...)...); code != 2 || !strings.Contains(errs, "usage: jetsaga list") {
			t.Errorf("list %q: code %d %s", args, code, errs)
		}
	}
}

func TestShowWatchExport(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.start("ok.yaml", "--params", `{"who":"ada"}`)

	// watch follows the saga from its start to its end.
	code, out, errs := e.run("watch", id)
	if code != 0 || !strings.Contains(out, "saga.created") || !strings.Contains(out, "saga.finished") ||
		!strings.Contains(out, "saga "+id+": succeeded") {
		t.Fatalf("watch: code %d\n%s\n%s", code, out, errs)
	}
	evs, err := e.cl.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs = e.run("show", id)
	for _, want := range []string{"saga      " + id + "  trip", "status    ✓ succeeded", "├─ flight", "├─ hotel", "└─ car", "   ├─ pick", "   └─ pay", "after pick", "✓ succeeded", `{"ref":"flight-do-1"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("show: code %d %s", code, errs)
	}
	var s client.Saga
	if code, out, _ := e.run("show", "--json", id); code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Status != client.StatusSucceeded || len(s.Nodes) != 6 {
		t.Fatalf("show --json: code %d %s", code, out)
	}

	code, out, errs = e.run("export", id)
	if code != 0 {
		t.Fatalf("export: code %d %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(evs) {
		t.Fatalf("export printed %d lines, the log has %d events", len(lines), len(evs))
	}
	// Each line names the log message it was written in, and how many
	// events that message holds: the decisions can be told apart.
	perMsg := map[int]int{}
	for _, ev := range evs {
		perMsg[ev.Message]++
	}
	for i, l := range lines {
		ev, err := events.Decode([]byte(l))
		if err != nil || ev.ID != evs[i].ID || ev.Type() != evs[i].Type() {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		var attrs struct {
			Seq  string `json:"jetsagalogseq"`
			Size string `json:"jetsagalogsize"`
		}
		if err := json.Unmarshal([]byte(l), &attrs); err != nil || attrs.Seq != fmt.Sprint(evs[i].Message) || attrs.Size != fmt.Sprint(perMsg[evs[i].Message]) {
			t.Fatalf("line %d: jetsagalogseq %q, jetsagalogsize %q; want %d, %d", i, attrs.Seq, attrs.Size, evs[i].Message, perMsg[evs[i].Message])
		}
	}
	if len(perMsg) < 2 || len(perMsg) >= len(lines) {
		t.Fatalf("%d events in %d log messages: the saga should have decisions of one and of several events", len(lines), len(perMsg))
	}

	// watch -json prints the same lines.
	if code, out, _ := e.run("watch", "-json", id); code != 0 || strings.Count(out, "\n") != len(evs) || !strings.HasPrefix(out, lines[0]) {
		t.Fatalf("watch -json: code %d\n%s", code, out)
	}

	for _, cmd := range []string{"show", "watch", "export"} {
		code, _, errs := e.run(cmd, uuid.NewString(), "-timeout", "200ms")
		lines := 1
		if cmd == "watch" {
			lines = 2 // the wait for the saga to appear is said first
		}
		if code != 1 || !strings.Contains(errs, "no saga") || strings.Count(errs, "\n") != lines {
			t.Errorf("%s of an unknown saga: code %d %q", cmd, code, errs)
		}
		if code, _, errs := e.run(cmd, "nope"); code != 1 || !strings.Contains(errs, "invalid saga id") {
			t.Errorf("%s of a bad id: code %d %q", cmd, code, errs)
		}
		if code, _, _ := e.run(cmd); code != 2 {
			t.Errorf("%s without an id: code %d", cmd, code)
		}
	}
}

func TestWatchStopsAtStuck(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.start("stuck.yaml")
	code, out, errs := e.run("watch", id)
	if code != 0 || !strings.Contains(out, "saga.stuck") || !strings.Contains(out, "stuck: the undo of a failed (permanent: cannot cancel); the saga waits for an operator") {
		t.Fatalf("watch: code %d\n%s\n%s", code, out, errs)
	}
}

func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	e := setup(t)

	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		id := e.start("hold.yaml")
		e.waitRunning(id)
		code, out, errs := e.run("abort", id, "--reason", "customer called", "--operator", "ada", "--wait")
		if code != 0 || !strings.Contains(out, "status    ↩ unwound") || !strings.Contains(out, "reason    aborted by an operator") {
			t.Fatalf("abort: code %d\n%s\n%s", code, out, errs)
		}
		evs, err := e.cl.Events(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(evs, func(ev client.LogEvent) bool { return ev.Type() == events.TypeOperatorAbort })
		if i < 0 || *evs[i].Data.(*events.OperatorAbort) != (events.OperatorAbort{Operator: "ada", Reason: "customer called"}) {
			t.Fatalf("the log lacks the abort by ada: %+v", evs)
		}
		code, _, errs = e.run("abort", id)
		if code != 1 || !strings.Contains(errs, "cannot abort saga "+id+": the saga has finished (unwound)") {
			t.Fatalf("abort of a finished saga: code %d %s", code, errs)
		}
	})
	t.Run("abort without waiting", func(t *testing.T) {
		t.Parallel()
		id := e.start("hold.yaml")
		e.waitRunning(id)
		code, out, errs := e.run("abort", id, "--operator", "bob")
		if code != 0 || out != "abort sent for saga "+id+" (by bob)\n" {
			t.Fatalf("abort: code %d %q %s", code, out, errs)
		}
		if s := e.wait(id); s.Status != client.StatusUnwound {
			t.Fatalf("saga %s", s.Status)
		}
	})
	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		id := e.start("stuck.yaml")
		if s := e.wait(id); s.Status != client.StatusStuck {
			t.Fatalf("saga %s, want stuck", s.Status)
		}
		code, _, errs := e.run("retry", id, "pay")
		if code != 1 || !strings.Contains(errs, `can be retried; the node is failed (failed undos: a)`) {
			t.Fatalf("retry of the wrong node: code %d %s", code, errs)
		}
		code, out, errs := e.run("retry", id, "a", "--reason", "fixed the hotel API", "--wait")
		if code != 0 || !strings.Contains(out, "status    ↩ unwound") || !strings.Contains(out, "↩ undo_finished") {
			t.Fatalf("retry: code %d\n%s\n%s", code, out, errs)
		}
	})
	t.Run("resolve", func(t *testing.T) {
		t.Parallel()
		id := e.start("stuck.yaml")
		e.wait(id)
		if code, _, errs := e.run("resolve", id, "a"); code != 2 || !strings.Contains(errs, "--reason is required") {
			t.Fatalf("resolve without a reason: code %d %s", code, errs)
		}
		code, out, errs := e.run("resolve", id, "a", "--reason", "refunded by hand", "--wait", "--json")
		var s client.Saga
		if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Status != client.StatusUnwound {
			t.Fatalf("resolve: code %d\n%s\n%s", code, out, errs)
		}
		if n, _ := s.Node("a"); n.Resolved != "refunded by hand" {
			t.Fatalf("node a: %+v", n)
		}
		if code, out, _ := e.run("show", id); code != 0 || !strings.Contains(out, "resolved: refunded by hand") {
			t.Fatalf("show of a resolved node: %s", out)
		}
	})
	t.Run("abandon", func(t *testing.T) {
		t.Parallel()
		id := e.start("hold.yaml")
		e.waitRunning(id)
		code, out, errs := e.run("abandon", id, "--reason", "test over", "--wait")
		if code != 0 || !strings.Contains(out, "status    ⊘ abandoned") {
			t.Fatalf("abandon: code %d\n%s\n%s", code, out, errs)
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		unknown := uuid.NewString()
		for _, c := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"abort", unknown}, 1, "no saga " + unknown},
			{[]string{"retry", unknown, "a"}, 1, "no saga " + unknown},
			{[]string{"resolve", unknown, "a", "--reason", "r"}, 1, "no saga " + unknown},
			{[]string{"abandon", unknown}, 1, "no saga " + unknown},
			{[]string{"abort", "nope"}, 1, "invalid saga id"},
			{[]string{"abort"}, 2, "want one saga id"},
			{[]string{"retry", unknown}, 2, "want a saga id and a node"},
			{[]string{"resolve", unknown, "a"}, 2, "--reason is required"},
		} {
			code, _, errs := e.run(c.args...)
			if code != c.code || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != c.code {
				t.Errorf("%q: code %d, want %d with %q: %q", c.args, code, c.code, c.want, errs)
			}
		}
	})
}

func TestStatus(t *testing.T) {
	t.Parallel()
	e := setup(t)
	code, out, errs := e.run("status")
	for _, want := range []string{"1 coordinator answered; the topology has 2 partitions, each driven by one coordinator", "coordinator c1", "partitions       2: 0-1", "in flight        0 sagas, 0 requests",
		"epochs           0@", "recovery         ", "leases (partition: holder@revision", "0:c1@"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("status: code %d %s", code, errs)
	}
	var sts []coordinator.Status
	if code, out, _ := e.run("status", "-json"); code != 0 || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 1 || sts[0].Name != "c1" || len(sts[0].Partitions) != 2 {
		t.Fatalf("status -json: code %d %s", code, out)
	}

	srv := natstest.RunServer(t) // no coordinator
	code, _, errs = run(t, "status", "-server", srv.ClientURL())
	if code != 1 || !strings.Contains(errs, "no coordinator answered on jetsaga.coordinator.status within 1s") {
		t.Fatalf("no coordinator: code %d %s", code, errs)
	}
}

func TestCoordinatorCommand(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"coordinator", "-server", url, "-name", "cli-coord", "-partitions", "2", "-log-format", "json"}, &out, &errb)
	}()
	natstest.Eventually(t, 20*time.Second, func() error {
		code, out, errs := run(t, "status", "-server", url, "-json")
		if code != 0 || !strings.Contains(out, `"name": "cli-coord"`) {
			return fmt.Errorf("status: code %d %s %s", code, out, errs)
		}
		return nil
	})
	// It drives sagas.
	_, js := natstest.Connect(t, url)
	startParticipant(t, js)
	def := filepath.Join(t.TempDir(), "ok.yaml")
	if err := os.WriteFile(def, []byte(testDefs["ok.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, "start", "-server", url, "-f", def, "--wait"); code != 0 {
		t.Fatalf("start --wait: code %d %s", code, errs)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("coordinator exited %d: %s", code, errb.String())
	}
	// Its log is JSON lines on stderr.
	sc := bufio.NewScanner(strings.NewReader(errb.String()))
	var msgs []string
	for sc.Scan() {
		var rec struct{ Msg string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		msgs = append(msgs, rec.Msg)
	}
	if !slices.Contains(msgs, "jetsaga coordinator running; SIGINT or SIGTERM stops it") || !slices.Contains(msgs, "stopping: finishing the inputs being handled") {
		t.Fatalf("log: %v", msgs)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-log-format", "xml"}, "-log-format"},
		{[]string{"-log-level", "loud"}, "-log-level"},
		{[]string{"-own", "0-x"}, "-own"},
		{[]string{"-partitions", "2", "-own", "5"}, "partition 5 is not between 0 and 1"},
	} {
		code, _, errs := run(t, append([]string{"coordinator", "-server", url}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("coordinator %q: code %d %s", c.args, code, errs)
		}
	}
}

func TestReplayVerifies(t *testing.T) {
	t.Parallel()
	e := setup(t)

	// A running saga, which the coordinator holds and keeps appending to
	// (its node times out and is retried).
	running := e.start("hold.yaml")
	e.waitRunning(running)
	code, out, errs := e.run("replay", running)
	if code != 0 || !strings.Contains(out, "verified: the coordinator's state equals the log's fold (coordinator c1, at log message #") {
		t.Fatalf("replay of a running saga: code %d\n%s\n%s", code, out, errs)
	}
	var v struct{ Verification verification }
	if code, out, _ := e.run("replay", "-json", running); code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.Verification.Verified || v.Verification.Against != "coordinator" {
		t.Fatalf("replay -json: code %d %s", code, out)
	}

	// A finished saga: no coordinator holds it; the index agrees.
	finished := e.start("fail.yaml")
	e.wait(finished)
	natstest.Eventually(t, 10*time.Second, func() error {
		code, out, errs := e.run("replay", finished)
		if code != 0 || !strings.Contains(out, "the saga has finished, so no coordinator holds it; verified: the saga index's summary agrees with the log's fold") {
			return fmt.Errorf("code %d\n%s\n%s", code, out, errs)
		}
		return nil
	})
	if code, out, _ := e.run("replay", "-verify=false", finished); code != 0 || strings.Contains(out, "verified") {
		t.Fatalf("replay -verify=false: %d %s", code, out)
	}
}

func TestCompareStates(t *testing.T) {
	t.Parallel()
	id := uuid.NewString()
	def := saga.New("demo").Then(saga.Action("a", "svc.a")).Then(saga.Action("b", "svc.b")).MustBuild()
	d, err := machine.Decide(machine.New(id), machine.Start{Now: time.Now(), Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fold := d.State
	// What a coordinator answers: its state, through JSON.
	answer := func() *coordinator.SagaState {
		st := coordinator.SagaState{SagaID: id, Coordinator: "c9", Status: fold.Status, Events: fold.Events, Nodes: map[string]machine.Node{}}
		for i, g := range fold.Graph.Nodes {
			st.Nodes[g.Path] = fold.Nodes[i]
		}
		b, _ := json.Marshal(st)
		var out coordinator.SagaState
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	if diff := compareStates(fold, answer()); diff != nil {
		t.Fatalf("equal states differ: %v", diff)
	}

	other := answer()
	other.Status = machine.StatusUnwinding
	other.Events++
	n := other.Nodes["a"]
	n.Attempt, n.Waiting = 2, false
	other.Nodes["a"] = n
	delete(other.Nodes, "b")
	other.Nodes["ghost"] = n
	got := compareStates(fold, other)
	want := []string{
		"status: unwinding in the coordinator, running in the log",
		"events: 3 in the coordinator, 2 in the log",
		"node a: attempt 2 in the coordinator, 1 in the log; waiting (none) in the coordinator, true in the log",
		"node b: missing from the coordinator's state",
		"node ghost: in the coordinator's state, not in the log's definition",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	v := &verification{Against: "coordinator", Coordinator: "c9", Seq: 4, Mismatches: got}
	var b strings.Builder
	v.print(&b)
	if !strings.HasPrefix(b.String(), "MISMATCH: coordinator c9's state differs from the log's fold (at log message #4):\n  - status:") {
		t.Fatalf("print: %s", b.String())
	}
	if err := v.err(); err == nil || !strings.Contains(err.Error(), "coordinator c9's state differs from the log's fold: status: unwinding") {
		t.Fatalf("err: %v", err)
	}
}

// A finished saga reads the same once it has left the log for the
// archive: show, replay, export and list.
func TestArchivedSagaReadsTheSame(t *testing.T) {
	t.Parallel()
	e := setupWith(t, coordinator.Config{DedupeWindow: time.Second})
	id := e.start("ok.yaml", "--params", `{"who":"ada"}`)
	if code, out, errs := e.run("watch", id); code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("watch: code %d\n%s\n%s", code, out, errs)
	}
	commands := [][]string{{"show", id}, {"show", "--json", id}, {"replay", id}, {"replay", "--json", id}, {"export", id}}
	live := map[int]string{}
	for i, c := range commands {
		code, out, errs := e.run(c...)
		if code != 0 {
			t.Fatalf("%v: code %d %s", c, code, errs)
		}
		live[i] = out
	}
	log := streams.NewLog(e.js)
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, err := log.Read(context.Background(), id, 0); !errors.Is(err, streams.ErrNotFound) {
			return fmt.Errorf("still on the log: %v", err)
		}
		return nil
	})
	// The same, but "seq": the sequence of the message holding the
	// events, in JETSAGA_LOG while the saga is there, in JETSAGA_ARCHIVE
	// after ("message" numbers the decisions either way).
	seq := regexp.MustCompile(`"seq": \d+`)
	for i, c := range commands {
		code, out, errs := e.run(c...)
		if code != 0 || seq.ReplaceAllString(out, "") != seq.ReplaceAllString(live[i], "") {
			t.Errorf("%v from the archive: code %d %s\n--- live\n%s\n--- archived\n%s", c, code, errs, live[i], out)
		}
	}
	if code, out, _ := e.run("list"); code != 0 || !strings.Contains(out, id[:8]) && !strings.Contains(out, id) {
		t.Errorf("list does not show the archived saga: code %d\n%s", code, out)
	}
	if code, out, _ := e.run("watch", id); code != 0 || !strings.Contains(out, "saga "+id+": succeeded") {
		t.Errorf("watch of the archived saga: code %d\n%s", code, out)
	}
}

// Every command works on a namespaced deployment with --namespace (and
// finds nothing of it without): start, show, list, status, operator
// commands single and bulk, replay, export.
func TestNamespacedDeployment(t *testing.T) {
	t.Parallel()
	e := setupWith(t, coordinator.Config{Topology: streams.Config{Namespace: "blue"}})
	id := e.start("hold.yaml")
	e.waitRunning(id)
	for _, args := range [][]string{{"show", id}, {"list"}, {"status"}, {"export", id}, {"replay", id}, {"pause", id, "--reason", "r"}, {"resume", id}} {
		if code, out, errs := e.run(args...); code != 0 {
			t.Fatalf("%v in namespace blue: code %d\n%s\n%s", args, code, out, errs)
		}
	}
	if code, out, errs := e.run("abort", "--status", "running", "--yes", "--reason", "bulk"); code != 0 || !strings.Contains(out, "abort sent for 1 of 1 saga(s)") {
		t.Fatalf("bulk abort in namespace blue: code %d\n%s\n%s", code, out, errs)
	}
	if s := e.wait(id); s.Status != client.StatusUnwound {
		t.Fatalf("saga %s after the bulk abort, want unwound", s.Status)
	}
	// Without the namespace, the default deployment is asked: it has none.
	if code, _, errs := run(t, "show", id, "-server", e.url); code == 0 || !strings.Contains(errs, "JETSAGA_WORK") {
		t.Fatalf("show without --namespace: code %d %s", code, errs)
	}
}
