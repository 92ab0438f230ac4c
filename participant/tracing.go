package participant

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// startSpan starts the span of handling r, a child of the span its request
// carries (Config.TracerProvider); the handler's context carries it, so a
// handler's own spans nest under it. end ends it with the result.
func (p *Participant) startSpan(ctx context.Context, r *Request) (context.Context, func(res result)) {
	if p.tracer == nil || r.TraceParent == "" {
		return ctx, func(result) {}
	}
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": r.TraceParent})
	ctx, span := p.tracer.Start(ctx, "jetsaga handle "+string(r.Op)+" "+r.Action, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("jetsaga.saga_id", r.SagaID), attribute.String("jetsaga.node", r.Node),
			attribute.Int("jetsaga.attempt", r.Attempt)))
	return ctx, func(res result) {
		if !res.ok && res.err != nil {
			span.SetStatus(codes.Error, res.err.String())
		}
		span.End()
	}
}
