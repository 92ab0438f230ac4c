package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/streams"
)

// Config configures a Coordinator. The zero value works for one
// coordinator against a server jetsaga may create streams on.
type Config struct {
	// Name identifies the coordinator in logs, status and the source of the
	// events it writes. Default: "<hostname>-<pid>".
	Name string
	// Logger receives structured logs (attributes saga_id, node, event).
	// Default: discard.
	Logger *slog.Logger
	// Topology is the JetStream topology; Start applies it (creating what is
	// missing). Its Partitions must be the same for every coordinator; 0
	// adopts the deployed topology's (streams.DefaultPartitions for a new
	// one).
	Topology streams.Config
	// Partitions, if set, pins the partitions this coordinator drives,
	// without leases (for tests and hand-split setups; coordinators given
	// the same partition compete, safely but wastefully). Default: none
	// pinned — coordinators share all partitions with leases and fail over
	// on their own.
	Partitions []int
	// LeaseTTL is how long a partition lease and the coordinator's
	// heartbeat last without renewal: a dead coordinator's partitions are
	// taken over after at most this long. At least 1s. Default: 10s.
	// Leases are renewed on a connection of their own, opened with the
	// options of the coordinator's connection (same servers, credentials,
	// TLS and inbox prefix), so renewals never queue behind the data path.
	LeaseTTL time.Duration
	// MaxInFlightPerSaga bounds one saga's requests awaiting replies or
	// retries; 0 means no bound.
	MaxInFlightPerSaga int
	// MaxInFlight bounds the requests awaiting replies or retries across all
	// the coordinator's sagas; 0 means no bound. Sagas held back continue
	// as requests finish.
	MaxInFlight int
	// RecoveryInterval is how often the coordinator looks for in-flight
	// sagas of its partitions that it is not driving (one that failed to
	// load, say) and recovers them. Default: 30s.
	RecoveryInterval time.Duration
	// RequestTimeout bounds each call to NATS. Default: 10s.
	RequestTimeout time.Duration
	// Retention is how long finished sagas are kept in the archive
	// (JETSAGA_ARCHIVE's MaxAge, set when the coordinator creates the
	// stream; an existing stream's age limit is left as found), where
	// show, replay, export and list find them. Default DefaultRetention;
	// negative keeps them forever. It is Topology.ArchiveMaxAge unless that
	// is set. Sagas that have not finished are never removed.
	Retention time.Duration
	// DedupeWindow is how long a finished saga stays on its log subject
	// (its last message, a rollup of the whole log, expires after it):
	// while it does, a start with the same id or idempotency key finds it
	// and starts nothing; after it, such a start is a new saga. Every
	// saga in the window costs the server a subject (a few hundred bytes
	// of memory, docs/performance.md). A start that may have been handled
	// before (redelivered) and was sent longer ago than the window creates
	// no saga. Default DefaultDedupeWindow; negative: finished sagas stay
	// on their subjects until an operator purges them.
	DedupeWindow time.Duration

	// markerRefresh, for tests, replaces markerRefresh (zero: it).
	markerRefresh time.Duration
	// Registerer, if set, receives the coordinator's Prometheus metrics
	// (docs/operations.md), labelled with its Name.
	Registerer prometheus.Registerer
	// TracerProvider, if set, receives OpenTelemetry spans: one per node
	// attempt (request to outcome, the request carrying its context) and
	// one per saga (emitted when it ends), in the saga's trace.
	TracerProvider trace.TracerProvider
	// AfterAppend, if set, is called each time a decision is durable in a
	// saga's log, before its requests are sent or timers armed, with the
	// number of messages the log now holds. It is a hook for tests: the
	// sagatest package's CrashAtEveryEvent closes the coordinator's
	// connection there, as if the process died. It runs on the saga's
	// partition goroutine and must not block for long.
	AfterAppend func(sagaID string, messages int)
}

// DefaultRetention is Config.Retention's default: 7 days.
const DefaultRetention = 7 * 24 * time.Hour

// DefaultDedupeWindow is Config.DedupeWindow's default: an hour, far
// longer than a client's retries or a start's redeliveries take.
const DefaultDedupeWindow = time.Hour

func (c Config) withDefaults() Config {
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Topology.Partitions == 0 {
		c.Topology.Partitions = streams.DefaultPartitions
	}
	if c.RecoveryInterval == 0 {
		c.RecoveryInterval = 30 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Topology.ArchiveMaxAge == 0 {
		c.Topology.ArchiveMaxAge = c.Retention
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	seen := map[int]bool{}
	for _, p := range c.Partitions {
		if p < 0 || p >= c.Topology.Partitions {
			bad("partition %d is not between 0 and %d", p, c.Topology.Partitions-1)
		}
		if seen[p] {
			bad("partition %d is listed twice", p)
		}
		seen[p] = true
	}
	if c.MaxInFlight < 0 || c.MaxInFlightPerSaga < 0 {
		bad("MaxInFlight and MaxInFlightPerSaga must not be negative")
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < time.Second {
		bad("LeaseTTL %s is under 1s", c.LeaseTTL)
	}
	if c.RecoveryInterval < 0 || c.RequestTimeout < 0 {
		bad("RecoveryInterval and RequestTimeout must not be negative")
	}
	return errors.Join(errs...)
}
