package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// syncBuffer is a bytes.Buffer safe for a command writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExample(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t, "validate", "-f", "../../examples/trip/trip.yaml")
	if code != 0 || !strings.Contains(out, `saga "trip.book": 3 nodes, valid`) || !strings.Contains(out, "car") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errs)
	}
}

func TestValidateReportsOneProblemALine(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(f, []byte("name: bad\nnodes:\n- {name: a, kind: action, action: svc.x, after: [b]}\n- {name: b, kind: action, action: svc.y, after: [a]}\n- {name: c, kind: action, action: svc.z, after: [nope]}\n"), 0o644)
	code, _, errs := run(t, "validate", "-f", f)
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if code != 1 || len(lines) != 3 || !strings.Contains(lines[1], `unknown node "nope"`) || !strings.Contains(lines[2], "cycle") {
		t.Fatalf("code %d stderr %q", code, errs)
	}
	if code, _, errs := run(t, "validate"); code != 2 || !strings.Contains(errs, "-f is required") {
		t.Fatalf("code %d stderr %q", code, errs)
	}
	if code, _, _ := run(t, "nope"); code != 2 {
		t.Fatalf("unknown command: code %d", code)
	}
}

// jetsaga with no command is a usage error; help is not. The command
// column is aligned; a bad flag is said once, with one line of help.
func TestUsageAndHelp(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t)
	if code != 2 || out != "" || !strings.Contains(errs, "Commands:") {
		t.Fatalf("no command: code %d stdout %q stderr %q", code, out, errs)
	}
	code, out, _ = run(t, "help")
	if code != 0 {
		t.Fatalf("help: code %d", code)
	}
	col := -1
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "  ") {
			continue
		}
		f := strings.Fields(l)
		at := strings.Index(l[2+len(f[0]):], f[1]) + 2 + len(f[0])
		if col >= 0 && at != col {
			t.Fatalf("help: the summaries are not aligned:\n%s", out)
		}
		col = at
	}
	code, out, errs = run(t, "start", "-f", "x.yaml", "--nope")
	if code != 2 || out != "" || strings.Count(errs, "\n") != 2 || strings.Count(errs, "nope") != 1 || !strings.Contains(errs, "jetsaga start -h for its flags") {
		t.Fatalf("bad flag: code %d stderr %q", code, errs)
	}
	code, _, errs = run(t, "start", "-f", "x.yaml", "--fault", "hotel:explode")
	if code != 2 || strings.Count(errs, "\n") != 2 {
		t.Fatalf("bad fault: code %d stderr %q", code, errs)
	}
	code, _, errs = run(t, "start", "-h")
	if code != 0 || !strings.Contains(errs, "-params") {
		t.Fatalf("start -h: code %d stderr %q", code, errs)
	}
}

func TestDevServesTheTopology(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- Run(ctx, []string{"dev", "-dir", t.TempDir(), "-port", "-1"}, &out, &errb) }()
	var url string
	natstest.Eventually(t, 30*time.Second, func() error {
		s := out.String()
		if i := strings.Index(s, "nats://"); i >= 0 {
			url = strings.Fields(s[i:])[0]
			return nil
		}
		return os.ErrNotExist
	})
	_, js := natstest.Connect(t, url)
	if err := streams.Verify(context.Background(), js, streams.Config{}); err != nil {
		t.Fatalf("dev's server lacks the topology: %v", err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("dev exited %d: %s", code, errb.String())
	}
}

// dev stopped with a saga in flight and started again on the same data
// resumes it: its coordinator drives the saga again.
func TestDevResumesUnfinishedSagas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var lastOut string
	runDev := func() (string, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb syncBuffer
		done := make(chan int)
		go func() { done <- Run(ctx, []string{"dev", "-dir", dir, "-port", "-1", "-demo=false"}, &out, &errb) }()
		var url string
		natstest.Eventually(t, 30*time.Second, func() error {
			if s := out.String(); strings.Contains(s, "Ready.") {
				i := strings.Index(s, "nats://")
				url = strings.Fields(s[i:])[0]
				lastOut = s
				return nil
			}
			return os.ErrNotExist
		})
		return url, func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("dev exited %d: %s", code, errb.String())
			}
		}
	}
	url, stop := runDev()
	_, js := natstest.Connect(t, url)
	cl, err := client.New(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody serves this action, so the saga stays in flight.
	def := saga.New("waits").Then(saga.Action("a", "test.nobody")).MustBuild()
	id, err := cl.Start(context.Background(), def, nil)
	if err != nil {
		t.Fatal(err)
	}
	driven := func(nc *nats.Conn) error {
		_, err := nc.Request(streams.SagaStateSubject(id), nil, time.Second)
		return err
	}
	nc1, _ := natstest.Connect(t, url)
	natstest.Eventually(t, 20*time.Second, func() error { return driven(nc1) })
	stop()

	url, stop = runDev()
	defer stop()
	nc2, _ := natstest.Connect(t, url)
	natstest.Eventually(t, 20*time.Second, func() error { return driven(nc2) })
	if !strings.Contains(lastOut, "resumed 1 unfinished saga(s) from the last run:") || !strings.Contains(lastOut, id+" waits (running)") {
		t.Errorf("dev does not say what it resumed:\n%s", lastOut)
	}
}

func TestReplayPrintsTimelineAndState(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	def := saga.New("demo").Then(saga.Action("a", "svc.a").Undo("svc.ua")).Then(saga.Action("b", "svc.b")).MustBuild()
	now := time.Now().UTC()
	d, err := machine.Decide(machine.New(id), machine.Start{Now: now, Created: events.SagaCreated{Definition: def, Params: json.RawMessage(`{}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := streams.NewLog(js)
	b, _ := events.EncodeBatch(d.Events)
	seq, err := log.Append(ctx, id, 0, b)
	if err != nil {
		t.Fatal(err)
	}
	req := d.Commands[0].(machine.SendRequest)
	d, err = machine.Decide(d.State, machine.Reply{Now: now, Reply: events.ActionReply{RequestID: req.ID, Op: events.OpDo, Node: "a", Attempt: 1, OK: true, Output: json.RawMessage(`{"x":1}`)}}, machine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = events.EncodeBatch(d.Events)
	if _, err := log.Append(ctx, id, seq, b); err != nil {
		t.Fatal(err)
	}

	code, out, errs := run(t, "replay", "-server", srv.ClientURL(), id)
	for _, want := range []string{"saga.created", "demo, 2 nodes", `node.succeeded               a → {"x":1}`, "node.started                 b attempt 1", "saga " + id + ": running (4 events in 2 messages)", "a                        succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	code, out, _ = run(t, "replay", "-json", "-server", srv.ClientURL(), id)
	var v struct {
		Status string
		Events []json.RawMessage
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Status != "running" || len(v.Events) != 4 {
		t.Fatalf("json replay: code %d %s", code, out)
	}
	if code, _, errs := run(t, "replay", "-server", srv.ClientURL(), uuid.NewString()); code != 1 || !strings.Contains(errs, "has no log") {
		t.Fatalf("unknown saga: code %d %s", code, errs)
	}
	if code, _, errs := run(t, "replay", "-server", srv.ClientURL(), "nope"); code != 1 || !strings.Contains(errs, "saga id") {
		t.Fatalf("bad id: code %d %s", code, errs)
	}
}

func TestConformanceUsage(t *testing.T) {
	if code, _, errs := run(t, "conformance"); code != 2 || !strings.Contains(errs, "--action is required") {
		t.Fatalf("conformance without --action: exit %d, %q", code, errs)
	}
	if code, _, errs := run(t, "conformance", "--action", "a.b", "--params", "{nope"); code != 2 || !strings.Contains(errs, "--params is not JSON") {
		t.Fatalf("conformance with bad params: exit %d, %q", code, errs)
	}
	if code, _, errs := run(t, "conformance", "--action", "a b"); code != 2 || !strings.Contains(errs, "--action") {
		t.Fatalf("conformance with a bad action: exit %d, %q", code, errs)
	}
}
