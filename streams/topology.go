package streams

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config says how the topology is laid out. The zero value is a valid
// single-server configuration.
type Config struct {
	// Namespace prefixes every stream, bucket and subject (see Namespace);
	// empty is the default deployment.
	Namespace Namespace

	// Replicas is the replication factor of every stream and bucket, 1 to 5.
	// Default 1 (a single server). Use 3 in production: with the file store
	// a write is acknowledged once in the OS page cache, so durability
	// against power loss comes from replication.
	Replicas int

	// Partitions is the number of partitions sagas are spread over (see
	// Partition). Default 16. Every coordinator and participant of a
	// deployment must use the same value; it is recorded in the metadata of
	// JETSAGA_WORK and JETSAGA_TIMERS, and Apply and Verify refuse a
	// different one.
	Partitions int

	// Storage is the storage of every stream and bucket. Default
	// jetstream.FileStorage (the zero value).
	Storage jetstream.StorageType

	// LogMaxAge is how long saga logs are kept. Default 0: forever (until
	// an operator purges them). Sagas older than this lose their log, so
	// it must exceed the longest saga's lifetime by a wide margin.
	LogMaxAge time.Duration

	// ArchiveMaxAge is how long finished sagas are kept in the archive
	// (the retention): JETSAGA_ARCHIVE's MaxAge. Default 7 days; negative:
	// forever.
	ArchiveMaxAge time.Duration

	// WorkMaxAge is how long action requests, replies and commands are kept
	// in JETSAGA_WORK, for audit and for consumers that fall behind.
	// Default 24h.
	WorkMaxAge time.Duration

	// BarrierTTL is how long participants' idempotency barrier records are
	// kept: a request redelivered after this may run its handler again.
	// Default 7 days.
	BarrierTTL time.Duration

	// DuplicateWindow is the window in which a message with the same
	// Nats-Msg-Id is dropped as a duplicate, on every stream. Default 2m.
	// It may not exceed LogMaxAge or WorkMaxAge.
	DuplicateWindow time.Duration

	// MaxMsgSize is the largest message (payload plus headers) a stream
	// accepts, in bytes. Default 1 MiB, the server's default max_payload;
	// raising it past the server's max_payload has no effect.
	MaxMsgSize int32
}

// Defaults, as documented on Config.
const (
	DefaultReplicas = 1
	// DefaultPartitions is 16: every partition is a durable consumer
	// whose state the server writes to disk up to 10 times a second, so
	// more partitions cost a single server CPU (docs/performance.md)
	// while 16 still spread over up to 16 coordinators.
	DefaultPartitions      = 16
	DefaultWorkMaxAge      = 24 * time.Hour
	DefaultArchiveMaxAge   = 7 * 24 * time.Hour
	DefaultBarrierTTL      = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxMsgSize      = 1 << 20
)

// leaseMarkerTTL is the lease bucket's LimitMarkerTTL. Setting it enables
// per-key TTLs (jetstream.KeyTTL), which leases need; its value is how long
// the delete marker left by an expired lease stays visible to watchers.
const leaseMarkerTTL = 10 * time.Second

// Metadata keys jetsaga records on its streams.
const (
	metaPartitions = "jetsaga.partitions"
	metaTopology   = "jetsaga.topology"
	topologyV1     = "1"
)

// minDuration is the server's lower bound for MaxAge and duplicate windows.
const minDuration = 100 * time.Millisecond

func (c Config) withDefaults() Config {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.WorkMaxAge == 0 {
		c.WorkMaxAge = DefaultWorkMaxAge
	}
	if c.ArchiveMaxAge == 0 {
		c.ArchiveMaxAge = DefaultArchiveMaxAge
	}
	if c.BarrierTTL == 0 {
		c.BarrierTTL = DefaultBarrierTTL
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	return c
}

// Validate reports every problem with c (after defaults are applied) at
// once, each wrapping ErrInvalidConfig; nil if there are none.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if err := c.Namespace.Validate(); err != nil {
		bad("Namespace", "%v", err)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("Replicas", "must be between 1 and 5, got %d", c.Replicas)
	}
	if c.Partitions < 1 {
		bad("Partitions", "must be at least 1, got %d", c.Partitions)
	}
	if c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage {
		bad("Storage", "must be jetstream.FileStorage or jetstream.MemoryStorage, got %d", int(c.Storage))
	}
	positive := func(field string, d time.Duration) bool {
		if d < 0 {
			bad(field, "must not be negative, got %s", d)
			return false
		}
		if d > 0 && d < minDuration {
			bad(field, "must be at least %s, got %s", minDuration, d)
			return false
		}
		return true
	}
	logOK := positive("LogMaxAge", c.LogMaxAge)
	workOK := positive("WorkMaxAge", c.WorkMaxAge)
	if c.ArchiveMaxAge > 0 {
		positive("ArchiveMaxAge", c.ArchiveMaxAge)
	}
	positive("BarrierTTL", c.BarrierTTL)
	if positive("DuplicateWindow", c.DuplicateWindow) {
		if logOK && c.LogMaxAge > 0 && c.DuplicateWindow > c.LogMaxAge {
			bad("DuplicateWindow", "%s exceeds LogMaxAge %s", c.DuplicateWindow, c.LogMaxAge)
		}
		if workOK && c.DuplicateWindow > c.WorkMaxAge {
			bad("DuplicateWindow", "%s exceeds WorkMaxAge %s", c.DuplicateWindow, c.WorkMaxAge)
		}
	}
	if c.MaxMsgSize < 0 {
		bad("MaxMsgSize", "must not be negative, got %d", c.MaxMsgSize)
	}
	return errors.Join(errs...)
}

// Topology is every stream and bucket jetsaga uses, with its configuration.
type Topology struct {
	Streams []jetstream.StreamConfig
	Buckets []jetstream.KeyValueConfig
}

// Declare lists every stream and bucket of the topology for cfg. It is the
// one place resources are declared; Apply creates them and Verify checks
// them. The error, if cfg is invalid, is Validate's.
func Declare(cfg Config) (Topology, error) {
	if err := cfg.Validate(); err != nil {
		return Topology{}, err
	}
	c := cfg.withDefaults()
	mon := streamMonitor(c.Replicas)
	ns := c.Namespace
	meta := func() map[string]string {
		return map[string]string{
			metaTopology:   topologyV1,
			metaPartitions: strconv.Itoa(c.Partitions),
		}
	}
	return Topology{
		Streams: []jetstream.StreamConfig{
			{
				Name:              ns.LogStream(),
				Description:       "jetsaga saga logs: one subject per saga",
				Subjects:          []string{ns.subject(logSubjects)},
				Retention:         jetstream.LimitsPolicy,
				Discard:           jetstream.DiscardOld,
				MaxAge:            c.LogMaxAge,
				MaxMsgs:           -1,
				MaxBytes:          -1,
				MaxMsgsPerSubject: -1,
				MaxMsgSize:        c.MaxMsgSize,
				Storage:           c.Storage,
				Replicas:          c.Replicas,
				Duplicates:        c.DuplicateWindow,
				// Reads go through direct get, without a consumer per saga.
				AllowDirect: true,
				// A log is append-only; a purge by an operator is allowed.
				DenyDelete: true,
				// A saga's last decision is a rollup restating its log,
				// kept for the dedupe window (Log.AppendRollup).
				AllowRollup: true,
				AllowMsgTTL: true,
				Metadata:    withMonitor(map[string]string{metaTopology: topologyV1}, mon),
			},
			{
				Name:              ns.ArchiveStream(),
				Description:       "jetsaga finished sagas, one message each, kept for the retention",
				Subjects:          []string{ns.subject(archiveSubjects)},
				Retention:         jetstream.LimitsPolicy,
				Discard:           jetstream.DiscardOld,
				MaxAge:            max(c.ArchiveMaxAge, 0),
				MaxMsgs:           -1,
				MaxBytes:          -1,
				MaxMsgsPerSubject: -1,
				MaxMsgSize:        c.MaxMsgSize,
				Storage:           c.Storage,
				Replicas:          c.Replicas,
				// A second copy of a saga is dropped within the window (the
				// server wants it no longer than the age limit).
				Duplicates:  archiveDuplicates(c),
				AllowDirect: true,
				DenyDelete:  true,
				Metadata:    withMonitor(map[string]string{metaTopology: topologyV1}, mon),
			},
			{
				Name:              ns.WorkStream(),
				Description:       "jetsaga action requests, participant replies and coordinator commands",
				Subjects:          []string{ns.subject(requestSubjects), ns.subject(replySubjects), ns.subject(commandSubjects)},
				Retention:         jetstream.LimitsPolicy,
				Discard:           jetstream.DiscardOld,
				MaxAge:            c.WorkMaxAge,
				MaxMsgs:           -1,
				MaxBytes:          -1,
				MaxMsgsPerSubject: -1,
				MaxMsgSize:        c.MaxMsgSize,
				Storage:           c.Storage,
				Replicas:          c.Replicas,
				Duplicates:        c.DuplicateWindow,
				Metadata:          withMonitor(meta(), mon),
			},
			{
				Name:              ns.TimerStream(),
				Description:       "jetsaga durable timers (message schedules)",
				Subjects:          []string{ns.subject(timerSchedSubjects), ns.subject(timerFireSubjects)},
				Retention:         jetstream.LimitsPolicy,
				Discard:           jetstream.DiscardOld,
				MaxMsgs:           -1,
				MaxBytes:          -1,
				MaxMsgsPerSubject: -1,
				MaxMsgSize:        c.MaxMsgSize,
				Storage:           c.Storage,
				Replicas:          c.Replicas,
				Duplicates:        c.DuplicateWindow,
				AllowMsgSchedules: true,
				// The server requires roll-ups for schedules (a schedule
				// replaces the previous one on its subject) and would turn
				// them on itself; declaring it keeps Verify exact.
				AllowRollup: true,
				// Lets fired timers carry a TTL (Nats-Schedule-TTL) so
				// they do not pile up; the stream has no MaxAge because a
				// schedule may lie far in the future.
				AllowMsgTTL: true,
				Metadata:    withMonitor(meta(), mon),
			},
		},
		Buckets: []jetstream.KeyValueConfig{
			{
				Bucket:         ns.LeaseBucket(),
				Metadata:       mon,
				Description:    "jetsaga partition leases",
				History:        1,
				Storage:        c.Storage,
				Replicas:       c.Replicas,
				LimitMarkerTTL: leaseMarkerTTL,
			},
			{
				Bucket:      ns.BarrierBucket(),
				Metadata:    mon,
				Description: "jetsaga participant idempotency barrier",
				History:     1,
				TTL:         c.BarrierTTL,
				Storage:     c.Storage,
				Replicas:    c.Replicas,
			},
			{
				Bucket:      ns.SagaBucket(),
				Metadata:    mon,
				Description: "jetsaga saga index",
				History:     1,
				Storage:     c.Storage,
				Replicas:    c.Replicas,
				// Markers of purged in-flight entries expire (PurgeTTL), so
				// listing a partition's in-flight sagas costs what is in
				// flight, not the partition's history.
				LimitMarkerTTL: leaseMarkerTTL,
			},
			{
				Bucket:      ns.DefinitionBucket(),
				Metadata:    mon,
				Description: "jetsaga saga definitions and defaults, content-addressed",
				History:     1,
				Storage:     c.Storage,
				Replicas:    c.Replicas,
			},
		},
	}, nil
}

// Apply creates every stream and bucket of the topology that is missing and
// checks the ones that exist. It never changes an existing resource: one
// whose settings jetsaga cannot work with is reported as an
// *IncompatibleError naming it and the field; limits (MaxAge, MaxBytes,
// duplicate window, ...) are left as found so operators can tune them.
// Apply is idempotent and safe to run from several processes at once. All
// problems are reported together (errors.Join).
func Apply(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	top, err := Declare(cfg)
	if err != nil {
		return err
	}
	var errs []error
	for _, want := range top.Streams {
		errs = append(errs, ensure(ctx, js, "stream", want.Name, want.Name, want, func() error {
			_, err := js.CreateStream(ctx, want)
			return err
		})...)
	}
	for _, kv := range top.Buckets {
		errs = append(errs, ensure(ctx, js, "bucket", kv.Bucket, kvStreamName(kv.Bucket), bucketStream(kv), func() error {
			_, err := js.CreateKeyValue(ctx, kv)
			return err
		})...)
	}
	return errors.Join(errs...)
}

// Verify checks that every stream and bucket of the topology exists and is
// compatible, without creating or changing anything. It reports every
// problem at once: *MissingError and *IncompatibleError values joined with
// errors.Join.
func Verify(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	top, err := Declare(cfg)
	if err != nil {
		return err
	}
	var errs []error
	check := func(kind, name, stream string, want jetstream.StreamConfig) {
		s, err := js.Stream(ctx, stream)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			errs = append(errs, &MissingError{Kind: kind, Name: name})
		case err != nil:
			errs = append(errs, fmt.Errorf("streams: look up %s %s: %w", kind, name, err))
		default:
			errs = append(errs, compare(kind, name, want, s.CachedInfo().Config)...)
		}
	}
	for _, want := range top.Streams {
		check("stream", want.Name, want.Name, want)
	}
	for _, kv := range top.Buckets {
		check("bucket", kv.Bucket, kvStreamName(kv.Bucket), bucketStream(kv))
	}
	return errors.Join(errs...)
}

// ensure makes one resource exist and checks it. A create can lose a race
// with another process creating the same resource (the server then says the
// name is in use if the two configs differ in any way); the loop then
// checks what the winner created.
func ensure(ctx context.Context, js jetstream.JetStream, kind, name, stream string, want jetstream.StreamConfig, create func() error) []error {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		s, err := js.Stream(ctx, stream)
		if err == nil {
			have := s.CachedInfo().Config
			if up, ok := upgrade(want, have); ok {
				updated, err := js.UpdateStream(ctx, up)
				if err != nil {
					return []error{fmt.Errorf("streams: turn on %s's rollups and message TTLs, or add its monitoring metadata: %w", name, err)}
				}
				have = updated.CachedInfo().Config
			}
			return compare(kind, name, want, have)
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return []error{fmt.Errorf("streams: look up %s %s: %w", kind, name, err)}
		}
		err = create()
		if err == nil {
			return nil
		}
		inUse := errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrBucketExists)
		if !inUse || attempt == attempts {
			return []error{fmt.Errorf("streams: create %s %s: %w", kind, name, err)}
		}
	}
}

// archiveDuplicates is the archive's duplicate window: the deployment's,
// unless the retention is shorter.
func archiveDuplicates(c Config) time.Duration {
	if c.ArchiveMaxAge > 0 && c.ArchiveMaxAge < c.DuplicateWindow {
		return c.ArchiveMaxAge
	}
	return c.DuplicateWindow
}

// upgrade returns have with the settings an earlier release did not ask
// for turned on (a log stream's rollups and message TTLs) and the
// monitoring metadata it lacks added, and whether it changed anything.
// Rollups and TTLs can be turned on, never off, on a stream that exists;
// monitoring keys already set are the operator's; nothing else changes.
func upgrade(want, have jetstream.StreamConfig) (jetstream.StreamConfig, bool) {
	changed := false
	if md, added := addMonitor(want, have); added {
		have.Metadata, changed = md, true
	}
	if want.AllowRollup && !have.AllowRollup && !have.DenyPurge {
		have.AllowRollup, changed = true, true
	}
	if want.AllowMsgTTL && !have.AllowMsgTTL {
		have.AllowMsgTTL, changed = true, true
	}
	return have, changed
}

func kvStreamName(bucket string) string { return "KV_" + bucket }

// bucketStream is the part of a bucket's underlying stream configuration
// that compare looks at.
func bucketStream(kv jetstream.KeyValueConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              kvStreamName(kv.Bucket),
		Subjects:          []string{"$KV." + kv.Bucket + ".>"},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: int64(max(kv.History, 1)),
		Storage:           kv.Storage,
		Replicas:          kv.Replicas,
		AllowMsgTTL:       kv.LimitMarkerTTL > 0,
		Metadata:          kv.Metadata,
	}
}

// compare lists the settings of have that jetsaga cannot work with, given
// that it declared want. Only settings correctness depends on are checked;
// limits are the operator's to tune.
func compare(kind, name string, want, have jetstream.StreamConfig) []error {
	var errs []error
	bad := func(field, w, h string) {
		errs = append(errs, &IncompatibleError{Kind: kind, Name: name, Field: field, Want: w, Have: h})
	}
	if !sameSet(want.Subjects, have.Subjects) {
		bad("Subjects", listString(want.Subjects), listString(have.Subjects))
	}
	if want.Retention != have.Retention {
		bad("Retention", want.Retention.String(), have.Retention.String())
	}
	if want.Storage != have.Storage {
		bad("Storage", want.Storage.String(), have.Storage.String())
	}
	if want.Replicas != have.Replicas {
		bad("Replicas", strconv.Itoa(want.Replicas), strconv.Itoa(have.Replicas))
	}
	if perSubject(want.MaxMsgsPerSubject) != perSubject(have.MaxMsgsPerSubject) {
		bad("MaxMsgsPerSubject", perSubjectString(want.MaxMsgsPerSubject), perSubjectString(have.MaxMsgsPerSubject))
	}
	flag := func(field string, w, h bool) {
		if w && !h {
			bad(field, "true", "false")
		}
	}
	flag("AllowDirect", want.AllowDirect, have.AllowDirect)
	flag("DenyDelete", want.DenyDelete, have.DenyDelete)
	flag("AllowMsgSchedules", want.AllowMsgSchedules, have.AllowMsgSchedules)
	flag("AllowRollup", want.AllowRollup, have.AllowRollup)
	flag("AllowMsgTTL", want.AllowMsgTTL, have.AllowMsgTTL)
	if have.Sealed {
		bad("Sealed", "false", "true")
	}
	if have.Mirror != nil {
		bad("Mirror", "none", "a mirror of "+have.Mirror.Name)
	}
	// Metadata written by jetsaga must agree; a resource created by other
	// means (without it) is accepted.
	for _, k := range slices.Sorted(maps.Keys(want.Metadata)) {
		if isMonitorKey(k) {
			continue // thresholds are the operator's to tune
		}
		if h, ok := have.Metadata[k]; ok && h != want.Metadata[k] {
			bad("Metadata["+k+"]", strconv.Quote(want.Metadata[k]), strconv.Quote(h))
		}
	}
	return errs
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

func listString(s []string) string { return "[" + strings.Join(s, " ") + "]" }

// perSubject normalizes a per-subject limit: zero and negative both mean
// unlimited.
func perSubject(n int64) int64 {
	if n <= 0 {
		return math.MaxInt64
	}
	return n
}

func perSubjectString(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

// DeployedPartitions returns the number of partitions recorded in the
// metadata of an existing JETSAGA_WORK, or 0 if there is none yet.
func DeployedPartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	return Namespace("").DeployedPartitions(ctx, js)
}

// DeployedPartitions is DeployedPartitions in namespace ns.
func (ns Namespace) DeployedPartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, ns.WorkStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("streams: look up %s: %w", ns.WorkStream(), err)
	}
	n, err := strconv.Atoi(s.CachedInfo().Config.Metadata[metaPartitions])
	if err != nil || n < 1 {
		return 0, fmt.Errorf("streams: %s has no valid %s metadata", ns.WorkStream(), metaPartitions)
	}
	return n, nil
}
