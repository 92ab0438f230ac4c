package coordinator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
)

// Reasons an input is rejected, the label of jetsaga_inputs_rejected_total.
const (
	rejectMalformed      = "malformed"       // not a CloudEvent jetsaga can read
	rejectWrongPartition = "wrong_partition" // a saga of another partition
	rejectMisrouted      = "misrouted"       // a reply on the command subject, or an unexpected type
	rejectForged         = "forged"          // a reply whose id does not answer its request
	rejectUnknownSaga    = "unknown_saga"    // no such saga
	rejectStale          = "stale"           // the machine refused it: stale, duplicate or not allowed now
	// a start of a saga that exists with another definition or params
	rejectIdempotencyConflict = "idempotency_conflict"
	// a signal the await node has taken already (answered as done)
	rejectDuplicate = "duplicate_signal"
)

// metrics are the coordinator's Prometheus metrics (Config.Registerer).
// Counters that the coordinator keeps anyway are exported as functions of
// its status.
type metrics struct {
	sagasStarted  *prometheus.CounterVec   // saga
	sagasFinished *prometheus.CounterVec   // saga, outcome
	sagasStuck    *prometheus.CounterVec   // saga
	sagasWaiting  *prometheus.CounterVec   // saga
	latency       *prometheus.HistogramVec // action, op, result
	retries       *prometheus.CounterVec   // action, op
	rejected      *prometheus.CounterVec   // reason
}

func newMetrics(c *Coordinator, reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"coordinator": c.cfg.Name}, reg)
	m := &metrics{
		sagasStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_sagas_started_total",
			Help: "Sagas started, by saga name."}, []string{"saga"}),
		sagasFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_sagas_finished_total",
			Help: "Sagas finished, by saga name and outcome (succeeded, unwound, abandoned)."}, []string{"saga", "outcome"}),
		sagasStuck: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_sagas_stuck_total",
			Help: "Times a saga got stuck on a failed undo, by saga name."}, []string{"saga"}),
		sagasWaiting: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_sagas_waiting_total",
			Help: "Times a node's failure held a saga for an operator instead of unwinding it, by saga name."}, []string{"saga"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jetsaga_node_seconds",
			Help:    "Time from a node's action (op do) or undo (op undo) request to its outcome, by action and result (ok, failed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"action", "op", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_node_retries_total",
			Help: "Attempts that failed and will be retried, by action and op."}, []string{"action", "op"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jetsaga_inputs_rejected_total",
			Help: "Inputs rejected, by reason: malformed, wrong_partition, misrouted, forged, unknown_saga, stale, idempotency_conflict, duplicate_signal."}, []string{"reason"}),
	}
	status := func(f func(Status) float64) func() float64 { return func() float64 { return f(c.Status()) } }
	cs := []prometheus.Collector{m.sagasStarted, m.sagasFinished, m.sagasStuck, m.sagasWaiting, m.latency, m.retries, m.rejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jetsaga_sagas_in_flight", Help: "Sagas loaded and not finished."},
			status(func(s Status) float64 { return float64(s.InFlightSagas) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jetsaga_sagas_stuck", Help: "Sagas in flight here stuck on a failed undo, waiting for an operator."},
			func() float64 { return float64(c.stats.stuck.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jetsaga_sagas_waiting", Help: "Sagas in flight here waiting for an operator after a node failed (on_failure: pause, or past a pivot)."},
			func() float64 { return float64(c.stats.waiting.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jetsaga_requests_in_flight", Help: "Action and undo requests awaiting replies or retries."},
			func() float64 { return float64(c.inflight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jetsaga_timers_armed", Help: "Timers armed in memory (attempt deadlines, short retry waits, delays)."},
			func() float64 { return float64(c.timers.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jetsaga_partitions", Help: "Partitions this coordinator drives."},
			status(func(s Status) float64 { return float64(len(s.Partitions)) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_leases_acquired_total", Help: "Partition leases taken."},
			func() float64 { return float64(c.stats.acquired.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_leases_lost_total", Help: "Partition leases given up: lost, expired or handed off."},
			func() float64 { return float64(c.stats.lost.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_sagas_recovered_total", Help: "Sagas recovered from their logs."},
			func() float64 { return float64(c.stats.recovered.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_recovery_failures_total", Help: "Sagas (or partition listings) recovery could not load."},
			func() float64 { return float64(c.stats.recoveryFailures.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_write_conflicts_total", Help: "Appends that lost an optimistic-concurrency race."},
			func() float64 { return float64(c.stats.conflicts.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_appends_fenced_total", Help: "Appends not made because the partition's lease could not be trusted."},
			func() float64 { return float64(c.stats.fenced.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jetsaga_sagas_expired_total", Help: "Finished sagas removed after their retention."},
			func() float64 { return float64(c.stats.expired.Load()) }),
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// reject counts a rejected input.
func (m *metrics) reject(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// decided records what a durable decision's events say: sagas started,
// finished and stuck, retries, and each node's latency from its request
// (sent, by request id) to its outcome.
func (m *metrics) decided(s *machine.State, evs []events.Event, sent map[string]time.Time) {
	if m == nil || s.Created == nil {
		return
	}
	name := s.Created.Definition.Name
	action := func(node string) string {
		if g, ok := s.Graph.Node(node); ok && g.Spec != nil && g.Spec.Action != "" {
			return g.Spec.Action
		}
		return "-"
	}
	for _, o := range requestOutcomes(evs) {
		id := events.RequestID(s.SagaID, o.node, o.op, o.attempt)
		t0, ok := sent[id]
		if !ok {
			continue
		}
		result := "ok"
		if o.failed != "" {
			result = "failed"
		}
		m.latency.WithLabelValues(action(o.node), string(o.op), result).Observe(o.at.Sub(t0).Seconds())
		delete(sent, id)
	}
	for _, e := range evs {
		switch d := e.Data.(type) {
		case *events.SagaCreated:
			m.sagasStarted.WithLabelValues(name).Inc()
		case *events.SagaFinished:
			m.sagasFinished.WithLabelValues(name, string(d.Outcome)).Inc()
		case *events.SagaStuck:
			m.sagasStuck.WithLabelValues(name).Inc()
		case *events.SagaWaiting:
			m.sagasWaiting.WithLabelValues(name).Inc()
		case *events.NodeAttemptFailed:
			m.retries.WithLabelValues(action(d.Node), string(events.OpDo)).Inc()
		case *events.UndoAttemptFailed:
			m.retries.WithLabelValues(action(d.Node), string(events.OpUndo)).Inc()
		}
	}
}
