package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// With tracer providers, the coordinator emits a span per node attempt and
// one per saga, and the participant a span per request, the child of the
// coordinator's: one trace, from the start.
func TestOpenTelemetrySpans(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	_, cjs := natstest.Connect(t, srv.ClientURL())
	c, err := coordinator.New(cjs, coordinator.Config{Name: "traced", Topology: testTopo(), Logger: testLogger(t), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	p, err := participant.New(js, participant.Config{Name: "traced-p", TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, *participant.Request) (any, error) { return "ok", nil }
	if err := p.Register("otel.ok", ok, ok); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cl, err := client.New(ctxT(t), js)
	if err != nil {
		t.Fatal(err)
	}
	const start = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	id, err := cl.Start(ctxT(t), saga.New("otel").Then(saga.Action("a", "otel.ok")).Then(saga.Action("b", "otel.ok")).MustBuild(), nil,
		client.WithTraceParent(start))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cl: cl}
	if s := e.wait(id); s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		coord, handled, sagas := map[string]bool{}, 0, 0
		for _, s := range rec.Ended() {
			if got := s.SpanContext().TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" {
				return fmt.Errorf("span %q in trace %s", s.Name(), got)
			}
			switch s.Name() {
			case "jetsaga do otel.ok":
				coord[s.SpanContext().SpanID().String()] = true
			case "jetsaga saga otel":
				sagas++
			}
		}
		for _, s := range rec.Ended() {
			if s.Name() == "jetsaga handle do otel.ok" {
				if !coord[s.Parent().SpanID().String()] {
					return fmt.Errorf("participant span's parent %s is not a coordinator node span", s.Parent().SpanID())
				}
				handled++
			}
		}
		if len(coord) != 2 || handled != 2 || sagas != 1 {
			return fmt.Errorf("%d node spans, %d participant spans, %d saga spans", len(coord), handled, sagas)
		}
		return nil
	})
}
