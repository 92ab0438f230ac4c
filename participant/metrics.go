package participant

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetsaga/jetsaga/events"
)

// metrics are the participant's Prometheus metrics (Config.Registerer).
type metrics struct {
	handled   *prometheus.HistogramVec // action, op, result
	malformed *prometheus.CounterVec   // action
}

func newMetrics(name string, reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"participant": name}, reg)
	m := &metrics{
		handled: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jetsaga_participant_request_seconds",
			Help:    "Time to handle a request, by action, op (do, undo) and result (ok, transient, permanent, nak).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"action", "op", "result"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_participant_requests_rejected_total",
			Help: "Requests terminated as malformed, by the action subject they came on."}, []string{"action"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.malformed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(action string, op events.Op, res result, took time.Duration) {
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case res.nak:
		outcome = "nak"
	case !res.ok && res.err != nil:
		outcome = string(res.err.Kind)
	}
	m.handled.WithLabelValues(action, string(op), outcome).Observe(took.Seconds())
}

func (m *metrics) rejectMalformed(action string) {
	if m != nil {
		m.malformed.WithLabelValues(action).Inc()
	}
}
