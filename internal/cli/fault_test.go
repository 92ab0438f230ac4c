package cli

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

func TestParseFault(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want events.Fault
		err  string
	}{
		{in: "hotel:fail-action", want: events.Fault{Node: "hotel", FailAction: true}},
		{in: "car/pick:repeat=2,undo-repeat=3,delay=1.5s,fail-undo", want: events.Fault{Node: "car/pick", Repeat: 2, UndoRepeat: 3, Delay: saga.Duration(1500e6), FailUndo: true}},
		{in: "hotel:clear", want: events.Fault{Node: "hotel"}},
		{in: "hotel", err: "want NODE:SPEC"},
		{in: ":fail-action", err: "want NODE:SPEC"},
		{in: "hotel:", err: "want NODE:SPEC"},
		{in: "hotel:explode", err: `unknown "explode"`},
		{in: "hotel:repeat", err: "repeat wants a count"},
		{in: "hotel:repeat=0", err: "repeat wants a count"},
		{in: "hotel:repeat=1000", err: "want 0 to 100"},
		{in: "hotel:delay=soon", err: "delay wants a duration"},
	} {
		got, err := parseFault(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parseFault(%q) = %v, want error with %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("parseFault(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestFaultCommands(t *testing.T) {
	t.Parallel()
	e := setup(t)

	t.Run("start with a fault", func(t *testing.T) {
		t.Parallel()
		code, out, errs := e.run("start", "-f", e.file("ok.yaml"), "--fault", "hotel:fail-action", "--fault", "flight:undo-repeat=2", "--wait")
		if code != 1 || !strings.Contains(errs, "node hotel failed (injected: the action fails without running (a fault injected into the saga))") ||
			!strings.Contains(out, "fault: fail action") {
			t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
		}
	})
	t.Run("start with a fault on a node that is not an action", func(t *testing.T) {
		t.Parallel()
		code, _, errs := e.run("start", "-f", e.file("ok.yaml"), "--fault", "car:fail-action")
		if code != 1 || !strings.Contains(errs, `faults apply to action nodes; "car" is a subsaga node (action nodes: flight, hotel, car/pick, car/pay)`) {
			t.Fatalf("code %d\nstderr %s", code, errs)
		}
	})
	t.Run("undo faults on a node without an undo", func(t *testing.T) {
		t.Parallel()
		code, _, errs := e.run("start", "-f", e.file("ok.yaml"), "--fault", "car/pay:fail-undo")
		if code != 1 || !strings.Contains(errs, `node "car/pay" has no undo, so fail-undo cannot apply to it`) {
			t.Fatalf("start: code %d\nstderr %s", code, errs)
		}
		id := e.start("noundo.yaml")
		e.waitRunning(id)
		for spec, want := range map[string]string{"fail-undo": "fail-undo", "undo-repeat=2": "undo-repeat"} {
			code, _, errs := e.run("fault", id, "wait:"+spec)
			if code != 1 || !strings.Contains(errs, `node "wait" has no undo, so `+want+` cannot apply to it`) {
				t.Fatalf("fault wait:%s: code %d\nstderr %s", spec, code, errs)
			}
		}
		if err := e.cl.Abandon(context.Background(), id, "test over"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("fault a running saga", func(t *testing.T) {
		t.Parallel()
		id := e.start("hold.yaml")
		e.waitRunning(id)
		code, out, errs := e.run("fault", id, "wait:fail-undo", "--reason", "drill", "--operator", "ada")
		if code != 0 || out != "fault of wait set to fail undo for saga "+id+" (by ada)\n" {
			t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
		}
		if code, _, errs := e.run("fault", id, "nope:fail-undo"); code != 1 || !strings.Contains(errs, `no node "nope" (action nodes: wait)`) {
			t.Fatalf("fault of an unknown node: code %d %s", code, errs)
		}
		if err := e.cl.Abort(context.Background(), id, "test"); err != nil {
			t.Fatal(err)
		}
		// wait's action timed out (outcome unknown), so it is undone: the
		// injected fault makes the undo fail and the saga stuck.
		s := e.wait(id)
		n, _ := s.Node("wait")
		if s.Status != client.StatusStuck || n.Error == nil || n.Error.Kind != events.ErrorInjected {
			t.Fatalf("saga %s, wait %+v", s.Status, n)
		}
		code, out, _ = e.run("replay", id)
		if code != 0 || !strings.Contains(out, "fault.injected") || !strings.Contains(out, "wait: fail undo, by ada: drill") {
			t.Fatalf("replay: code %d\n%s", code, out)
		}
	})
}

func TestBenchCommand(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t, "bench", "--count", "10", "--concurrency", "2", "--partitions", "2", "--no-baseline")
	if code != 0 || !strings.Contains(out, "jetsaga bench: linear-3, 10 sagas, 2 in flight") || !strings.Contains(out, "errors 0") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
	}
	if code, _, errs := run(t, "bench", "--workload", "nope"); code != 2 || !strings.Contains(errs, `unknown workload "nope"`) {
		t.Fatalf("code %d %s", code, errs)
	}
	// --history reports both runs and the process's heap around the
	// history it wrote.
	code, out, errs = run(t, "bench", "--count", "5", "--concurrency", "2", "--partitions", "2", "--no-baseline", "--history", "20", "--json")
	var hist struct {
		Before  map[string]any `json:"before_history"`
		After   map[string]any `json:"after_history"`
		History int            `json:"history"`
		HeapA   uint64         `json:"heap_before_history_bytes"`
		HeapB   uint64         `json:"heap_after_history_bytes"`
		Holds   string         `json:"heap_holds"`
	}
	if err := json.Unmarshal([]byte(out), &hist); code != 0 || err != nil || hist.History != 20 || hist.Before == nil || hist.After == nil ||
		hist.HeapA == 0 || hist.HeapB == 0 || !strings.Contains(hist.Holds, "embedded NATS server") {
		t.Fatalf("--history --json: code %d, %v\nstdout %s\nstderr %s", code, err, out, errs)
	}
}

func TestDrainCommand(t *testing.T) {
	t.Parallel()
	e := setup(t)
	code, out, errs := e.run("drain", "c1")
	if code != 0 || !strings.Contains(out, "coordinator c1 drained: it holds 0 partitions") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
	}
	code, out, _ = e.run("status", "--json")
	if code != 0 || !strings.Contains(out, `"draining": true`) {
		t.Fatalf("status after drain: code %d %s", code, out)
	}
	if code, out, errs := e.run("drain", "--undo", "c1"); code != 0 || !strings.Contains(out, "coordinator c1 takes partitions again") {
		t.Fatalf("undo: code %d %s %s", code, out, errs)
	}
	if code, _, errs := e.run("drain", "nobody", "--timeout", "500ms"); code != 1 || !strings.Contains(errs, `no coordinator named "nobody" answered`) {
		t.Fatalf("unknown coordinator: code %d %s", code, errs)
	}
}

func TestPermissionsCommand(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t, "permissions", "--role", "participant", "--user", "hotels", "--action", "hotels.book")
	if code != 0 || !strings.Contains(out, `user: "hotels"`) || !strings.Contains(out, `"_INBOX_hotels.>"`) ||
		!strings.Contains(out, streams.ActionConsumerName("hotels.book")) || strings.Contains(out, "jetsaga.log") {
		t.Fatalf("code %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := run(t, "permissions", "--role", "participant"); code != 2 || !strings.Contains(errs, "need the actions it serves") {
		t.Fatalf("participant without actions: code %d %s", code, errs)
	}
	if code, _, errs := run(t, "permissions", "--role", "admin"); code != 2 || !strings.Contains(errs, `unknown role "admin"`) {
		t.Fatalf("unknown role: code %d %s", code, errs)
	}
}

func TestOTLPFlags(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f := addOTLPFlags(fs)
	if tp, err := f.provider(context.Background(), "test"); tp != nil || err != nil {
		t.Fatalf("without an endpoint: %v %v", tp, err)
	}
	if err := fs.Parse([]string{"--otlp-endpoint", "127.0.0.1:4318", "--otlp-insecure"}); err != nil {
		t.Fatal(err)
	}
	tp, err := f.provider(context.Background(), "test")
	if err != nil || tp == nil {
		t.Fatalf("with an endpoint: %v %v", tp, err)
	}
	_ = tp.Shutdown(context.Background())
}

// A nats CLI context fills the connection flags not given explicitly.
func TestNATSContext(t *testing.T) {
	t.Parallel()
	e := setup(t)
	id := e.start("ok.yaml")
	e.wait(id)
	path := filepath.Join(t.TempDir(), "jetsaga-test.json")
	if err := os.WriteFile(path, []byte(`{"description":"test","url":"`+e.url+`","inbox_prefix":"_INBOX_ctx"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "show", id, "--context", path)
	if code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("show with a context: code %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := run(t, "show", id, "--context", path, "--server", "nats://127.0.0.1:1", "--timeout", "1s"); code != 1 || !strings.Contains(errs, "127.0.0.1:1") {
		t.Fatalf("an explicit --server must win over the context: code %d %s", code, errs)
	}
	if code, _, errs := run(t, "show", id, "--context", filepath.Join(t.TempDir(), "missing.json")); code != 1 || !strings.Contains(errs, "nats context") {
		t.Fatalf("a missing context: code %d %s", code, errs)
	}
}

// start --wait and client.Wait return once a stuck saga is at rest, with
// every failed undo, not at the first one (issue 11, §2).
func TestStuckWaitsForEveryFailedUndo(t *testing.T) {
	t.Parallel()
	e := setup(t)
	code, out, errs := e.run("start", "-f", e.file("stuck2.yaml"), "--wait")
	if code != 1 || !strings.Contains(errs, "stuck") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
	}
	for _, want := range []string{"the undo of a failed", "the undo of b failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("start --wait printed no %q:\n%s", want, out)
		}
	}
	id := strings.Fields(out)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.cl.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Timeline[len(s.Timeline)-1]
	if last.Type != "saga.stuck" || last.Node != "a, b" {
		t.Fatalf("the log ends with %+v, want saga.stuck of a, b", last)
	}
}
