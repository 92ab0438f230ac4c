package participant

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/streams"
)

// Config configures a Participant. The zero value is valid.
type Config struct {
	// Name names this participant in logs, in the source of its replies
	// (/jetsaga/participant/<Name>) and, with a random instance id, as the
	// owner of barrier locks. Letters, digits, '.', '-' and '_'. Default:
	// the host name (other characters replaced by '-'), or "participant".
	Name string

	// Logger receives the participant's logs, with attributes saga_id,
	// node, op, attempt and action. Default: logs are discarded.
	Logger *slog.Logger

	// DisableBarrier turns the idempotency barrier off: every delivery of a
	// request runs its handler, and the handlers' own idempotency (keyed
	// by Request.IdempotencyKey) is all there is. The barrier is on by
	// default; see the package documentation for what it guarantees.
	DisableBarrier bool

	// Namespace is the jetsaga deployment the participant serves
	// (streams.Namespace); empty is the default one.
	Namespace streams.Namespace

	// LegacyBarrierKeys: when a node has no barrier record in its action's
	// key space, look for one where releases before per-action key spaces
	// kept it ("<saga id>.<node>"), and carry it over. Turn it on while
	// upgrading participants with sagas in flight, for the bucket's TTL
	// (7 days by default), with permissions that allow reading the whole
	// bucket (jetsaga permissions --legacy-barrier); without it, a request
	// answered by an earlier release and delivered again after the upgrade
	// runs its action again.
	LegacyBarrierKeys bool

	// DisableService: do not register the participant as a NATS micro
	// service (streams.ParticipantService), which it does by default so
	// that `nats micro ls`, `info` and `stats` show it, with an endpoint
	// per action answering what it did (ActionStats). Its user then needs
	// to subscribe to $SRV.> and the actions' jetsaga.participant.<action>
	// (jetsaga permissions includes them).
	DisableService bool

	// Concurrency is how many handlers run at once, over all of the
	// participant's actions. Each action also buffers up to this many
	// requests it has fetched but not started. Default 16.
	Concurrency int

	// AckWait is the ack wait of the actions' consumers this participant
	// creates: a request not acknowledged (and not reported in progress)
	// this long after its delivery is delivered again, to any participant
	// of the action. A consumer that exists already is used as it is
	// (another participant, perhaps in another language, created it; to
	// change it, edit or delete it), and progress follows its ack wait.
	// While a handler runs, the participant reports progress every third
	// of the ack wait. At least 100ms. Default
	// streams.DefaultAckWait (5s): a request delivered into a NATS fault
	// comes back after it, so keep it well under the attempt timeouts.
	AckWait time.Duration

	// LockTTL is how long a barrier lock lasts without renewal. A running
	// handler's lock is renewed every third of it; if a renewal does not
	// get through in time, the handler's context is cancelled with cause
	// ErrLockLost, since another worker may then take the action over. It
	// must exceed the clock skew between participants by a wide margin.
	// At least 100ms. Default: AckWait.
	LockTTL time.Duration
	// Registerer, if set, receives the participant's Prometheus metrics
	// (request latency by action, op and result; malformed requests),
	// labelled with its Name.
	Registerer prometheus.Registerer
	// TracerProvider, if set, receives an OpenTelemetry span per request
	// handled, a child of the span the request carries; handlers' contexts
	// carry it.
	TracerProvider trace.TracerProvider
}

// Defaults, as documented on Config.
const (
	DefaultConcurrency = 16
	DefaultName        = "participant"
)

// minDuration is the least AckWait and LockTTL accepted.
const minDuration = 100 * time.Millisecond

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = defaultName()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.AckWait == 0 {
		c.AckWait = streams.DefaultAckWait
	}
	if c.LockTTL == 0 {
		c.LockTTL = c.AckWait
	}
	return c
}

// validate reports every problem with c (defaults applied) at once.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if i := strings.IndexFunc(c.Name, func(r rune) bool { return !nameRune(r) }); i >= 0 {
		bad("Name", "%q has %q at byte %d; use letters, digits, '.', '-' and '_'", c.Name, c.Name[i:i+1], i)
	}
	if err := c.Namespace.Validate(); err != nil {
		bad("Namespace", "%v", err)
	}
	if c.Concurrency < 1 {
		bad("Concurrency", "must be at least 1, got %d", c.Concurrency)
	}
	if c.AckWait < minDuration {
		bad("AckWait", "must be at least %s, got %s", minDuration, c.AckWait)
	}
	if c.LockTTL < minDuration {
		bad("LockTTL", "must be at least %s, got %s", minDuration, c.LockTTL)
	}
	return errors.Join(errs...)
}

func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
}

// defaultName is the host name with characters Name does not allow
// replaced by '-'.
func defaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return DefaultName
	}
	return strings.Map(func(r rune) rune {
		if nameRune(r) {
			return r
		}
		return '-'
	}, h)
}
