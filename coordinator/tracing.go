package coordinator

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
)

// tracer emits OpenTelemetry spans (Config.TracerProvider): one per node
// attempt, from its request to its outcome, whose context the request
// carries (so the participant's span is its child); and one per saga, from
// creation to end, emitted when it finishes. All in the trace the saga
// started in.
type tracer struct {
	t trace.Tracer
}

var traceContext = propagation.TraceContext{}

func newTracer(tp trace.TracerProvider) *tracer {
	if tp == nil {
		return nil
	}
	return &tracer{t: tp.Tracer("github.com/jetsaga/jetsaga/coordinator")}
}

// parent is the context of the saga's trace.
func parent(traceParent string) context.Context {
	return traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceParent})
}

// request starts the span of a request and returns the traceparent the
// request carries.
func (t *tracer) request(r *run, cmd machine.SendRequest, now time.Time) string {
	if t == nil {
		return events.ChildTraceParent(cmd.TraceParent, cmd.ID)
	}
	ctx, span := t.t.Start(parent(cmd.TraceParent), "jetsaga "+string(cmd.Request.Op)+" "+cmd.Action,
		trace.WithTimestamp(now), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("jetsaga.saga_id", r.state.SagaID), attribute.String("jetsaga.node", cmd.Request.Node),
			attribute.String("jetsaga.op", string(cmd.Request.Op)), attribute.Int("jetsaga.attempt", cmd.Request.Attempt)))
	if r.spans == nil {
		r.spans = map[string]trace.Span{}
	}
	if old, ok := r.spans[cmd.ID]; ok {
		old.End() // sent again (recovery): the first span ends here
	}
	r.spans[cmd.ID] = span
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// decided ends the spans of the requests a decision records the outcome
// of, and emits the saga's span when it finishes.
func (t *tracer) decided(r *run, evs []events.Event) {
	if t == nil {
		return
	}
	s := r.state
	for _, o := range requestOutcomes(evs) {
		id := events.RequestID(s.SagaID, o.node, o.op, o.attempt)
		span, ok := r.spans[id]
		if !ok {
			continue
		}
		if o.failed != "" {
			span.SetStatus(codes.Error, o.failed)
		}
		span.End(trace.WithTimestamp(o.at))
		delete(r.spans, id)
	}
	for _, e := range evs {
		if d, ok := e.Data.(*events.SagaFinished); ok {
			_, span := t.t.Start(parent(s.TraceParent), "jetsaga saga "+s.Created.Definition.Name, trace.WithTimestamp(s.CreatedAt),
				trace.WithAttributes(attribute.String("jetsaga.saga_id", s.SagaID), attribute.String("jetsaga.outcome", string(d.Outcome))))
			if d.Outcome != events.OutcomeSucceeded {
				span.SetStatus(codes.Error, string(d.Outcome))
			}
			span.End(trace.WithTimestamp(e.Time))
		}
	}
}

// drop ends the spans of a saga that is unloaded.
func (t *tracer) drop(r *run) {
	for id, span := range r.spans {
		span.End()
		delete(r.spans, id)
	}
}
