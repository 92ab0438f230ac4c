package bench

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// smoke runs a workload briefly against an embedded server (the CI check
// that the benchmarks run; figures come from jetsaga bench).
func smoke(tb testing.TB, name string, count, concurrency int, baseline bool) *Report {
	tb.Helper()
	w, err := LookupWorkload(name)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t, err := StartTarget(ctx, TargetConfig{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	defer t.Close()
	rep, err := Run(ctx, Config{Workload: w, Count: count, Concurrency: concurrency, Warmup: 2, Partitions: 4,
		Baseline: baseline, Dial: t.Dial, Durability: t.Describe})
	if err != nil {
		tb.Fatal(err)
	}
	return rep
}

func TestEveryWorkloadRuns(t *testing.T) {
	for _, w := range Workloads() {
		t.Run(w.Name, func(t *testing.T) {
			rep := smoke(t, w.Name, 12, 4, false)
			if rep.Errors != 0 || rep.Sagas != 12 {
				t.Fatalf("%d sagas, %d errors (%s)", rep.Sagas, rep.Errors, rep.FirstError)
			}
			if rep.MsgsPerSaga < float64(w.Nodes) || rep.P50 <= 0 || rep.P50 > rep.Max {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestReportHasTheBaselineRatio(t *testing.T) {
	rep := smoke(t, "linear-3", 20, 4, true)
	if rep.Pipeline == nil || rep.Publish == nil || rep.Ratio <= 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestLookupWorkload(t *testing.T) {
	if _, err := LookupWorkload("nope"); err == nil {
		t.Fatal("unknown workload accepted")
	}
}

func benchmark(b *testing.B, name string) {
	rep := smoke(b, name, b.N, 64, false)
	if rep.Errors > 0 {
		b.Fatalf("%d errors: %s", rep.Errors, rep.FirstError)
	}
	b.ReportMetric(rep.SagasPerSec, "sagas/s")
	b.ReportMetric(float64(rep.P50)/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(rep.P99)/float64(time.Millisecond), "p99-ms")
	b.ReportMetric(rep.MsgsPerSaga, "msgs/saga")
}

func BenchmarkLinear3(b *testing.B)  { benchmark(b, "linear-3") }
func BenchmarkUnwind3(b *testing.B)  { benchmark(b, "unwind-3") }
func BenchmarkFanout10(b *testing.B) { benchmark(b, "fanout-10") }
func BenchmarkSubsaga(b *testing.B)  { benchmark(b, "subsaga") }
func BenchmarkSlow(b *testing.B)     { benchmark(b, "slow") }

func TestHoldReportsHeapAndRecovery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg, err := StartTarget(ctx, TargetConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	rep, err := RunHold(ctx, Config{Concurrency: 8, Partitions: 4, Dial: tg.Dial, URL: tg.URL, Durability: tg.Describe}, 40, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sagas != 40 || rep.Recovered != 40 || rep.HeapInuse == 0 || rep.RecoverySeconds <= 0 {
		t.Fatalf("report %+v", rep)
	}
}

// The history written for --history is made of valid, finished sagas.
func TestPopulateHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := streams.Apply(ctx, js, streams.Config{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if err := PopulateHistory(ctx, js, 5); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := cl.List(ctx, client.Filter{})
	if err != nil || len(sums) != 5 {
		t.Fatalf("%d summaries (%v)", len(sums), err)
	}
	s, err := cl.Status(ctx, sums[0].ID)
	if err != nil || s.Status != client.StatusSucceeded || len(s.Nodes) != 3 {
		t.Fatalf("saga %+v (%v)", s, err)
	}
	// Archived as a coordinator archives today: a rollup of compact
	// messages, the definition by reference.
	first, err := streams.NewLog(js).Archived(ctx, sums[0].ID)
	if err != nil || first == nil || !strings.HasPrefix(string(first.Data), "[3,[2,") || strings.Contains(string(first.Data), `"nodes"`) {
		t.Fatalf("history archive message %v: %v", first, err)
	}
}
