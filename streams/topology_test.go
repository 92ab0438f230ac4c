package streams_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (streams.Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	tests := []struct {
		name string
		cfg  streams.Config
		want []string // one line per problem, in order
	}{
		{"replicas", streams.Config{Replicas: 7}, []string{"Replicas: must be between 1 and 5, got 7"}},
		{"negative replicas", streams.Config{Replicas: -1}, []string{"Replicas"}},
		{"partitions", streams.Config{Partitions: -3}, []string{"Partitions: must be at least 1, got -3"}},
		{"storage", streams.Config{Storage: 9}, []string{"Storage"}},
		{"tiny max age", streams.Config{LogMaxAge: time.Millisecond}, []string{"LogMaxAge: must be at least 100ms"}},
		{"window over log age", streams.Config{LogMaxAge: time.Minute}, []string{"DuplicateWindow: 2m0s exceeds LogMaxAge 1m0s"}},
		{"window over work age", streams.Config{WorkMaxAge: time.Minute, DuplicateWindow: 5 * time.Minute}, []string{"DuplicateWindow: 5m0s exceeds WorkMaxAge 1m0s"}},
		{"everything at once", streams.Config{
			Replicas: 9, Partitions: -1, Storage: 4, LogMaxAge: -1, WorkMaxAge: -1,
			BarrierTTL: -1, DuplicateWindow: -1, MaxMsgSize: -1,
		}, []string{"Replicas", "Partitions", "Storage", "LogMaxAge", "WorkMaxAge", "BarrierTTL", "DuplicateWindow", "MaxMsgSize"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if !errors.Is(err, streams.ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate reported %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	top, err := streams.Declare(streams.Config{Replicas: 3, Partitions: 16, LogMaxAge: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]jetstream.StreamConfig{}
	for _, s := range top.Streams {
		byName[s.Name] = s
		if s.Replicas != 3 || s.Retention != jetstream.LimitsPolicy || s.Storage != jetstream.FileStorage {
			t.Errorf("%s: replicas %d, retention %v, storage %v", s.Name, s.Replicas, s.Retention, s.Storage)
		}
	}
	logs := byName[streams.LogStream]
	if !logs.AllowDirect || !logs.DenyDelete || logs.MaxAge != 90*24*time.Hour || logs.Duplicates != 2*time.Minute ||
		!slices.Equal(logs.Subjects, []string{"jetsaga.log.*"}) {
		t.Errorf("log stream: %+v", logs)
	}
	work := byName[streams.WorkStream]
	if work.MaxAge != 24*time.Hour || work.Metadata["jetsaga.partitions"] != "16" ||
		!slices.Equal(work.Subjects, []string{"jetsaga.req.>", "jetsaga.reply.*", "jetsaga.cmd.*"}) {
		t.Errorf("work stream: %+v", work)
	}
	timers := byName[streams.TimerStream]
	if !timers.AllowMsgSchedules || timers.Metadata["jetsaga.partitions"] != "16" {
		t.Errorf("timer stream: %+v", timers)
	}
	var buckets []string
	for _, b := range top.Buckets {
		buckets = append(buckets, b.Bucket)
		if b.Replicas != 3 || b.History != 1 {
			t.Errorf("bucket %s: replicas %d, history %d", b.Bucket, b.Replicas, b.History)
		}
		switch b.Bucket {
		case streams.LeaseBucket:
			if b.LimitMarkerTTL <= 0 {
				t.Errorf("lease bucket without LimitMarkerTTL: per-key TTLs would be refused")
			}
		case streams.BarrierBucket:
			if b.TTL != 7*24*time.Hour {
				t.Errorf("barrier TTL %v, want 7 days", b.TTL)
			}
		case streams.DefinitionBucket:
			if b.TTL != 0 || b.History != 1 {
				t.Errorf("definitions TTL %v, history %d; want documents kept for good, one each", b.TTL, b.History)
			}
		}
	}
	if !slices.Equal(buckets, []string{"jetsaga_leases", "jetsaga_barrier", "jetsaga_sagas", "jetsaga_definitions"}) {
		t.Errorf("buckets %v", buckets)
	}
	if _, err := streams.Declare(streams.Config{Replicas: 6}); !errors.Is(err, streams.ErrInvalidConfig) {
		t.Errorf("Declare(invalid) = %v, want ErrInvalidConfig", err)
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	for i := range 2 {
		if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	if err := streams.Verify(ctx, js, streams.Config{}); err != nil {
		t.Fatalf("Verify after Apply: %v", err)
	}
	names := js.StreamNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	slices.Sort(got)
	want := []string{"JETSAGA_ARCHIVE", "JETSAGA_LOG", "JETSAGA_TIMERS", "JETSAGA_WORK", "KV_jetsaga_barrier", "KV_jetsaga_definitions", "KV_jetsaga_leases", "KV_jetsaga_sagas"}
	if !slices.Equal(got, want) {
		t.Fatalf("streams %v, want %v", got, want)
	}
}

func TestApplyConcurrently(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 4 {
		_, js := natstest.Connect(t, srv.ClientURL())
		wg.Go(func() {
			if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
				t.Errorf("Apply #%d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

func TestApplyRefusesIncompatibleStream(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	// Someone made JETSAGA_LOG by hand, as a work queue over all of jetsaga.log.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      streams.LogStream,
		Subjects:  []string{"jetsaga.log.>"},
		Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	err := streams.Apply(ctx, js, streams.Config{})
	if !errors.Is(err, streams.ErrIncompatible) {
		t.Fatalf("Apply = %v, want ErrIncompatible", err)
	}
	fields := incompatibleFields(t, err, streams.LogStream)
	for _, f := range []string{"Subjects", "Retention", "AllowDirect", "DenyDelete"} {
		if !slices.Contains(fields, f) {
			t.Errorf("Apply did not report %s of %s; it reported %v", f, streams.LogStream, fields)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, "stream JETSAGA_LOG exists with incompatible Subjects: have [jetsaga.log.>], need [jetsaga.log.*]") {
		t.Errorf("message does not name the stream and field clearly:\n%s", msg)
	}
	// The rest of the topology was created anyway, and Verify agrees.
	err = streams.Verify(ctx, js, streams.Config{})
	if errors.Is(err, streams.ErrMissing) {
		t.Errorf("Verify after Apply reports missing resources: %v", err)
	}
	if got := incompatibleFields(t, err, streams.LogStream); !slices.Equal(got, fields) {
		t.Errorf("Verify reported %v, Apply %v", got, fields)
	}
}

func TestApplyRefusesOtherPartitionCount(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	if err := streams.Apply(ctx, js, streams.Config{Partitions: 64}); err != nil {
		t.Fatal(err)
	}
	err := streams.Apply(ctx, js, streams.Config{Partitions: 32})
	for _, stream := range []string{streams.WorkStream, streams.TimerStream} {
		if f := incompatibleFields(t, err, stream); !slices.Equal(f, []string{"Metadata[jetsaga.partitions]"}) {
			t.Errorf("%s: incompatible fields %v, want the partition count (error: %v)", stream, f, err)
		}
	}
}

func TestVerifyListsEveryMissingResource(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	err := streams.Verify(testCtx(t), js, streams.Config{})
	var missing []string
	for _, e := range unjoin(err) {
		var m *streams.MissingError
		if !errors.As(e, &m) {
			t.Fatalf("unexpected problem: %v", e)
		}
		missing = append(missing, m.Kind+" "+m.Name)
	}
	want := []string{
		"stream JETSAGA_LOG", "stream JETSAGA_ARCHIVE", "stream JETSAGA_WORK", "stream JETSAGA_TIMERS",
		"bucket jetsaga_leases", "bucket jetsaga_barrier", "bucket jetsaga_sagas", "bucket jetsaga_definitions",
	}
	if !slices.Equal(missing, want) {
		t.Fatalf("Verify reported missing %v, want %v", missing, want)
	}
	if !errors.Is(err, streams.ErrMissing) {
		t.Fatalf("errors.Is(err, ErrMissing) is false for %v", err)
	}
	// Verify created nothing.
	if _, err := js.Stream(testCtx(t), streams.LogStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Verify created %s: %v", streams.LogStream, err)
	}
}

// The buckets and the timer stream accept what the engine will do with
// them: leases with a per-key TTL, and a timer that fires.
func TestTopologySupportsLeasesAndTimers(t *testing.T) {
	t.Parallel()
	js, _ := setup(t)
	ctx := testCtx(t)

	kv, err := js.KeyValue(ctx, streams.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "partition.3", []byte("coordinator-a"), jetstream.KeyTTL(time.Minute))
	if err != nil {
		t.Fatalf("lease with a TTL: %v", err)
	}
	if _, err := kv.Create(ctx, "partition.3", []byte("coordinator-b"), jetstream.KeyTTL(time.Minute)); err == nil {
		t.Fatal("a second lease on a held partition was granted")
	}
	if rev == 0 {
		t.Fatal("lease revision 0")
	}

	fire := streams.TimerFireSubject(3)
	cons, err := js.CreateConsumer(ctx, streams.TimerStream, jetstream.ConsumerConfig{FilterSubject: fire, AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(streams.TimerScheduleSubject(3, "timer-1"))
	m.Header.Set(jetstream.ScheduleHeader, "@at "+time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano))
	m.Header.Set(jetstream.ScheduleTargetHeader, fire)
	m.Data = []byte("wake up")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("schedule a timer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("timer did not fire: %v", err)
	}
	if string(msg.Data()) != "wake up" {
		t.Fatalf("timer fired %q", msg.Data())
	}
}

// incompatibleFields lists the fields err reports incompatible on stream.
func incompatibleFields(t *testing.T, err error, stream string) []string {
	t.Helper()
	var fields []string
	for _, e := range unjoin(err) {
		var inc *streams.IncompatibleError
		if errors.As(e, &inc) && inc.Name == stream {
			fields = append(fields, inc.Field)
		}
	}
	return fields
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func ExamplePartition() {
	fmt.Println(streams.Partition("0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e", 64))
	fmt.Println(streams.ReplySubject(streams.Partition("0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e", 64)))
	// Output:
	// 10
	// jetsaga.reply.10
}

// Every stream and bucket carries the monitoring metadata `nats server
// check` reads. A stream created without it (by an earlier release) gets
// it from Apply; a threshold an operator changed is left alone, and Verify
// does not count it as a difference.
func TestMonitoringMetadata(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := testCtx(t)
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"JETSAGA_ARCHIVE", "JETSAGA_LOG", "JETSAGA_TIMERS", "JETSAGA_WORK", "KV_jetsaga_barrier", "KV_jetsaga_definitions", "KV_jetsaga_leases", "KV_jetsaga_sagas"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if md := s.CachedInfo().Config.Metadata; md["io.nats.monitor.enabled"] != "true" {
			t.Errorf("stream %s metadata %v, want io.nats.monitor.enabled", name, md)
		}
	}
	if md := streams.ActionConsumer("a.b", 0).Metadata; md["io.nats.monitor.unprocessed-critical"] != "1000" {
		t.Errorf("action consumer metadata %v", md)
	}
	if md := streams.PartitionConsumer(0).Metadata; md["io.nats.monitor.enabled"] != "true" {
		t.Errorf("partition consumer metadata %v", md)
	}

	// An earlier release's stream (no monitoring keys), and a threshold an
	// operator tuned.
	s, err := js.Stream(ctx, "JETSAGA_WORK")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	for k := range cfg.Metadata {
		if strings.HasPrefix(k, "io.nats.monitor.") {
			delete(cfg.Metadata, k)
		}
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg3 := streams.Config{Replicas: 1}
	if err := streams.Apply(ctx, js, cfg3); err != nil {
		t.Fatal(err)
	}
	s, _ = js.Stream(ctx, "JETSAGA_WORK")
	cfg = s.CachedInfo().Config
	if cfg.Metadata["io.nats.monitor.enabled"] != "true" || cfg.Metadata["jetsaga.partitions"] == "" {
		t.Fatalf("Apply did not add the monitoring keys back, or lost others: %v", cfg.Metadata)
	}
	cfg.Metadata["io.nats.monitor.enabled"] = "false"
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := streams.Apply(ctx, js, cfg3); err != nil {
		t.Fatal(err)
	}
	if err := streams.Verify(ctx, js, cfg3); err != nil {
		t.Fatalf("Verify with a tuned threshold: %v", err)
	}
	s, _ = js.Stream(ctx, "JETSAGA_WORK")
	if v := s.CachedInfo().Config.Metadata["io.nats.monitor.enabled"]; v != "false" {
		t.Fatalf("Apply changed an operator's setting to %q", v)
	}
}
