package test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// One trace id from the saga's start through every event of its log and
// every action and undo request the participants get; each request has a
// span of its own.
func TestTraceContextIsCarried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	seen := map[string]string{} // request id → traceparent
	record := func(_ context.Context, req *participant.Request) (any, error) {
		mu.Lock()
		seen[req.ID] = req.TraceParent
		mu.Unlock()
		return nil, nil
	}
	fail := func(ctx context.Context, req *participant.Request) (any, error) {
		_, _ = record(ctx, req)
		return nil, participant.Permanent(errors.New("no"))
	}
	p, err := participant.New(e.js, participant.Config{Name: "traced"})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(p.Register("trace.ok", record, record), p.Register("trace.fail", fail, nil)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	def := saga.New("traced").Then(saga.Action("a", "trace.ok").Undo("trace.ok")).Then(saga.Action("b", "trace.fail")).MustBuild()
	id, err := e.cl.Start(ctxT(t), def, nil, client.WithTraceParent(tp))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.wait(id); s.Status != client.StatusUnwound {
		t.Fatalf("saga %s", s.Status)
	}
	evs, err := e.cl.Events(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.TraceParent != tp {
			t.Fatalf("log event %s carries %q, want %q", ev.ID, ev.TraceParent, tp)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 { // a do, b do, a undo
		t.Fatalf("requests seen: %v", seen)
	}
	spans := map[string]bool{}
	for rid, got := range seen {
		if !strings.HasPrefix(got, "00-"+traceID+"-") || len(got) != len(tp) {
			t.Fatalf("request %s carries %q, not trace %s", rid, got, traceID)
		}
		spans[got[36:52]] = true
	}
	if len(spans) != 3 {
		t.Fatalf("requests share spans: %v", seen)
	}
	if _, err := e.cl.Start(ctxT(t), def, nil, client.WithTraceParent("nope")); err == nil || !strings.Contains(err.Error(), "not a W3C traceparent") {
		t.Fatalf("bad trace parent: %v", err)
	}
}
