package test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

func linear3() *saga.Definition {
	return saga.New("linear-3").
		Then(saga.Action("a", "bench.a").Undo("bench.ua")).
		Then(saga.Action("b", "bench.b").Undo("bench.ub")).
		Then(saga.Action("c", "bench.c").Undo("bench.uc")).
		MustBuild()
}

// BenchmarkLinear3 runs 3-node sagas, 64 in flight, on an in-process
// embedded server (file store, R1) with one coordinator and a participant
// that answers at once. It reports sagas/s and the latency from start
// request to the saga.finished event observed.
//
//	go test -run XXX -bench Linear3 -benchtime 2000x ./test/
func BenchmarkLinear3(b *testing.B) {
	const inFlight = 64
	srv := natstest.RunServer(b)
	nc, js := natstest.Connect(b, srv.ClientURL())
	e := &env{url: srv.ClientURL(), nc: nc, js: js, topo: streams.Config{}}
	e.startCoordinatorB(b, "bench")
	cl, err := client.New(context.Background(), js)
	if err != nil {
		b.Fatal(err)
	}
	startRaw(b, js, succeedAll)

	// One subscription sees every saga finish.
	var mu sync.Mutex
	waiting := map[string]chan struct{}{}
	sub, err := nc.Subscribe("jetsaga.log.*", func(m *nats.Msg) {
		evs, err := events.DecodeLog(m.Subject[len("jetsaga.log."):], m.Data)
		if err != nil {
			return
		}
		if _, ok := evs[len(evs)-1].Data.(*events.SagaFinished); ok {
			mu.Lock()
			if ch := waiting[evs[0].SagaID]; ch != nil {
				close(ch)
			}
			mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	def := linear3()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	var latMu sync.Mutex
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for range work {
				id := uuid.NewString()
				ch := make(chan struct{})
				mu.Lock()
				waiting[id] = ch
				mu.Unlock()
				t0 := time.Now()
				if _, err := cl.Start(ctx, def, nil, client.WithSagaID(id)); err != nil {
					b.Error(err)
					return
				}
				select {
				case <-ch:
				case <-time.After(30 * time.Second):
					b.Errorf("saga %s did not finish", id)
					return
				}
				d := time.Since(t0)
				latMu.Lock()
				lat = append(lat, d)
				latMu.Unlock()
				mu.Lock()
				delete(waiting, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "sagas/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
