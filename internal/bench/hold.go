package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/saga"
)

// HoldReport is what RunHold measured.
type HoldReport struct {
	Sagas        int    `json:"sagas"`
	Coordinators int    `json:"coordinators"`
	Processes    bool   `json:"coordinator_processes"`
	Durability   string `json:"durability"`
	// StartSeconds is how long starting them all took, until every one was
	// in flight at a coordinator.
	StartSeconds float64 `json:"start_seconds"`
	// HeapInuse and HeapLive are the coordinators' heap in use (garbage
	// included) and live heap (as of their last GC) with every saga in
	// flight; per saga below.
	HeapInuse        uint64  `json:"heap_inuse_bytes"`
	HeapLive         uint64  `json:"heap_live_bytes"`
	HeapInusePerSaga float64 `json:"heap_inuse_per_saga"`
	HeapLivePerSaga  float64 `json:"heap_live_per_saga"`
	// RecoverySeconds is how long new coordinators, started after the
	// old ones stopped, took to hold every saga again.
	RecoverySeconds float64 `json:"recovery_seconds"`
	Recovered       int64   `json:"recovered"`
}

// holdDefinition is a saga whose one node never gets an answer: no
// participant serves bench.hold, and its timeout is an hour.
func holdDefinition() *saga.Definition {
	return saga.New("bench.hold").Then(saga.Action("wait", "bench.hold").Timeout(time.Hour).Retry(saga.RetryPolicy{MaxAttempts: 1})).MustBuild()
}

// RunHold starts n sagas that stay in flight, measures the coordinators'
// heap with all of them in flight, then stops the coordinators, starts new
// ones and measures how long they take to recover every saga.
func RunHold(ctx context.Context, cfg Config, n int, progress io.Writer) (*HoldReport, error) {
	cfg = cfg.withDefaults()
	nc, err := cfg.Dial("bench hold")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	fl, err := startFleet(ctx, cfg, nc)
	if err != nil {
		return nil, err
	}
	defer func() { fl.stop() }()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(ctx, js)
	if err != nil {
		return nil, err
	}
	rep := &HoldReport{Sagas: n, Coordinators: cfg.Coordinators, Processes: len(cfg.CoordinatorExec) > 0, Durability: cfg.Durability}
	def := holdDefinition()
	t0 := time.Now()
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := cl.Start(ctx, def, nil, client.WithSagaID(uuid.Must(uuid.NewV7()).String())); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("bench: start: %w", firstErr)
	}
	inFlight := func() (int, []int64) {
		total, recovered := 0, []int64{}
		for _, st := range fl.statuses() {
			total += st.InFlightSagas
			recovered = append(recovered, st.Recovered)
		}
		return total, recovered
	}
	wait := func(what string) error {
		last := time.Now()
		for {
			k, _ := inFlight()
			if k >= n {
				return nil
			}
			if time.Since(last) > 10*time.Second {
				fmt.Fprintf(progress, "  %s: %d of %d sagas in flight\n", what, k, n)
				last = time.Now()
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("bench: %s: %d of %d sagas in flight: %w", what, k, n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := wait("starting"); err != nil {
		return nil, err
	}
	rep.StartSeconds = time.Since(t0).Seconds()
	// Let the coordinators settle (GC) before reading their heap.
	time.Sleep(2 * time.Second)
	for _, st := range fl.statuses() {
		rep.HeapInuse += st.Process.HeapInuse
		rep.HeapLive += st.Process.HeapLive
	}
	rep.HeapInusePerSaga = float64(rep.HeapInuse) / float64(n)
	rep.HeapLivePerSaga = float64(rep.HeapLive) / float64(n)

	fmt.Fprintf(progress, "  %d sagas in flight after %.1f s; restarting the coordinators\n", n, rep.StartSeconds)
	fl.stop()
	stopProfile, err := startCPUProfile(cfg.CPUProfile) // of the recovery
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	fl, err = startFleet(ctx, cfg, nc)
	if err != nil {
		stopProfile()
		return nil, err
	}
	err = wait("recovering")
	rep.RecoverySeconds = time.Since(t1).Seconds()
	stopProfile()
	if err != nil {
		return nil, err
	}
	_, recovered := inFlight()
	for _, r := range recovered {
		rep.Recovered += r
	}
	return rep, nil
}

// Print writes the report as text.
func (r *HoldReport) Print(w io.Writer) {
	where := "in this process (the heap includes the server's)"
	if r.Processes {
		where = "as child processes"
	}
	fmt.Fprintf(w, "jetsaga bench --hold: %d sagas in flight, %d coordinator(s) %s\nserver: %s\n\n", r.Sagas, r.Coordinators, where, r.Durability)
	fmt.Fprintf(w, "started      all in flight after %.1f s\n", r.StartSeconds)
	fmt.Fprintf(w, "heap         in use %.1f MB (%.0f bytes per saga), live %.1f MB (%.0f bytes per saga)\n",
		float64(r.HeapInuse)/(1<<20), r.HeapInusePerSaga, float64(r.HeapLive)/(1<<20), r.HeapLivePerSaga)
	fmt.Fprintf(w, "recovery     new coordinators held every saga again %.2f s after they started (%d recovered)\n", r.RecoverySeconds, r.Recovered)
}
