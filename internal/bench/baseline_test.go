package bench

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

// setupBaseline starts a server and returns a JetStream context on it and
// a context bounding the test.
func setupBaseline(t testing.TB) (context.Context, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, js
}

// assertNoStreams fails t if the server has any stream left.
func assertNoStreams(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	names := js.StreamNames(ctx)
	var left []string
	for name := range names.Name() {
		left = append(left, name)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("streams left behind: %v", left)
	}
}

func TestBaselinePublishRate(t *testing.T) {
	t.Parallel()
	ctx, js := setupBaseline(t)
	res, err := PublishRate(ctx, js, BaselineConfig{PublishCount: 2000})
	if err != nil {
		t.Fatalf("PublishRate: %v", err)
	}
	if res.Msgs != 2000 || res.Elapsed <= 0 || res.MsgsPerSec <= 0 {
		t.Errorf("PublishRate = %+v, want 2000 messages in a positive time", res)
	}
	assertNoStreams(ctx, t, js)
}

func TestBaselinePipeline(t *testing.T) {
	t.Parallel()
	ctx, js := setupBaseline(t)
	res, err := Pipeline(ctx, js, BaselineConfig{Count: 200, InFlight: 16, Prefix: "PIPETEST"})
	if err != nil {
		t.Fatalf("Pipeline: %v", err)
	}
	if res.Sagas != 200 || res.Errors != 0 || res.FirstError != "" {
		t.Errorf("Pipeline: %d finished, %d failed (%q); want 200 and none", res.Sagas, res.Errors, res.FirstError)
	}
	// A 3-step pipeline writes 3+1 appends to the log (one per step and
	// the final one), 3 requests and 3 replies. Consumer acks are not
	// stream messages.
	const want = 4 + 3 + 3
	if res.MsgsPerSaga != want {
		t.Errorf("MsgsPerSaga = %v, want %v", res.MsgsPerSaga, want)
	}
	if !(0 < res.P50 && res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("latencies p50 %v, p90 %v, p99 %v, max %v: want positive and ordered", res.P50, res.P90, res.P99, res.Max)
	}
	if res.Elapsed <= 0 || res.SagasPerSec <= 0 {
		t.Errorf("Elapsed %v, SagasPerSec %v: want positive", res.Elapsed, res.SagasPerSec)
	}
	assertNoStreams(ctx, t, js)
}

// A leftover stream with messages is not reused: its subjects and
// sequences would collide with the run's.
func TestBaselinePipelineRefusesLeftover(t *testing.T) {
	t.Parallel()
	ctx, js := setupBaseline(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OLD_LOG", Subjects: []string{"old.log.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "old.log.0", nil); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if _, err := Pipeline(ctx, js, BaselineConfig{Count: 1, Prefix: "OLD"}); err == nil {
		t.Fatal("Pipeline ran over a leftover stream")
	}
	if _, err := js.Stream(ctx, "OLD_LOG"); err != nil {
		t.Errorf("the leftover stream is gone: %v", err)
	}
}

func TestBaselinePercentiles(t *testing.T) {
	t.Parallel()
	ms := func(n int) []time.Duration {
		lat := make([]time.Duration, n)
		for i := range lat {
			lat[i] = time.Duration(n-i) * time.Millisecond // descending: Percentiles sorts
		}
		return lat
	}
	for _, tc := range []struct {
		name               string
		lat                []time.Duration
		p50, p90, p99, max time.Duration
	}{
		{"none", nil, 0, 0, 0, 0},
		{"one", ms(1), time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond},
		{"ten", ms(10), 5 * time.Millisecond, 9 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{"hundred", ms(100), 50 * time.Millisecond, 90 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p50, p90, p99, mx := Percentiles(tc.lat)
			if p50 != tc.p50 || p90 != tc.p90 || p99 != tc.p99 || mx != tc.max {
				t.Errorf("Percentiles = %v %v %v %v, want %v %v %v %v", p50, p90, p99, mx, tc.p50, tc.p90, tc.p99, tc.max)
			}
		})
	}
}

// BenchmarkBaselinePipeline runs b.N pipelines of the default shape (3
// steps, 64 in flight, R1) and reports their rate and latency.
func BenchmarkBaselinePipeline(b *testing.B) {
	ctx, js := setupBaseline(b)
	b.ResetTimer()
	res, err := Pipeline(ctx, js, BaselineConfig{Count: b.N})
	if err != nil {
		b.Fatalf("Pipeline: %v", err)
	}
	if res.Errors > 0 {
		b.Fatalf("Pipeline: %d of %d failed, the first with: %s", res.Errors, b.N, res.FirstError)
	}
	b.ReportMetric(res.SagasPerSec, "sagas/s")
	b.ReportMetric(float64(res.P50)/float64(time.Millisecond), "p50_ms")
	b.ReportMetric(float64(res.P99)/float64(time.Millisecond), "p99_ms")
	b.ReportMetric(res.MsgsPerSaga, "msgs/saga")
}
