// Package bench measures jetsaga against the JetStream writes it needs:
// workloads of sagas run end to end through coordinators and participants,
// and, in the same run on the same server, two baselines — raw async
// publishes and a hand-written pipeline with the traffic of a saga but no
// engine. `jetsaga bench` and the package's Go benchmarks run it.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/procstat"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/streams"
)

// Config is one benchmark run.
type Config struct {
	Workload Workload
	// Concurrency is how many sagas are in flight at once (default 64).
	Concurrency int
	// Count is how many sagas to run; Duration, if set instead, runs sagas
	// for that long.
	Count    int
	Duration time.Duration
	// Warmup sagas run before measuring (default Concurrency).
	Warmup int
	// Coordinators and Participants are how many of each run in this
	// process, each with its own connection (default 1 each).
	Coordinators, Participants int
	// ParticipantConcurrency bounds each participant's handlers running at
	// once (default max(Concurrency, 16)).
	ParticipantConcurrency int
	// Partitions of the topology (default streams.DefaultPartitions) and
	// Replicas of its streams (default 1).
	Partitions, Replicas int
	// Barrier keeps the participants' idempotency barrier on (2 KV writes
	// per node); off by default.
	Barrier bool
	// Baseline runs the baselines after the workload (with the same
	// replicas and concurrency).
	Baseline bool
	// Dial opens a connection to the server under test; URL is its URL,
	// for child processes.
	Dial func(name string) (*nats.Conn, error)
	URL  string
	// CoordinatorExec, if set, runs the coordinators as child processes:
	// the command line of `jetsaga coordinator` (server, name,
	// partitions and replicas flags are added). Their CPU and heap are
	// then reported apart from this process's.
	CoordinatorExec []string
	// Durability labels the figures with the durability they ran under.
	Durability string
	// Logger receives the coordinators' and participants' logs.
	Logger *slog.Logger
	// Timeout bounds one saga (default 1m).
	Timeout time.Duration
	// CPUProfile, if set, is a file to write a CPU profile of the measured
	// run to.
	CPUProfile string
}

// Report is what a run measured.
type Report struct {
	Workload     string `json:"workload"`
	Durability   string `json:"durability"`
	Concurrency  int    `json:"concurrency"`
	Coordinators int    `json:"coordinators"`
	Participants int    `json:"participants"`
	Partitions   int    `json:"partitions"`
	Replicas     int    `json:"replicas"`
	Barrier      bool   `json:"barrier"`

	Sagas       int           `json:"sagas"`
	Errors      int           `json:"errors"`
	FirstError  string        `json:"first_error,omitempty"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	SagasPerSec float64       `json:"sagas_per_sec"`
	P50         time.Duration `json:"p50_ns"`
	P90         time.Duration `json:"p90_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	// MsgsPerSaga and MsgsPerNode are JetStream messages written (every
	// stream, KV buckets included) per saga and per action node.
	MsgsPerSaga float64 `json:"msgs_per_saga"`
	MsgsPerNode float64 `json:"msgs_per_node"`
	// LogBytesPerSaga is what a saga's log adds to JETSAGA_LOG's bytes
	// (a finished saga's rollup, until its dedupe window ends), and
	// ArchiveBytesPerSaga what it adds to JETSAGA_ARCHIVE's (the same
	// rollup with its summary, for the retention).
	LogBytesPerSaga     float64 `json:"log_bytes_per_saga"`
	ArchiveBytesPerSaga float64 `json:"archive_bytes_per_saga"`
	// CPUSeconds is this process's CPU time while measuring: with an
	// embedded server it includes the server, the participants and the
	// driver, not only the coordinators.
	CPUSeconds float64 `json:"cpu_seconds"`
	// HeapPeak is the peak of this process's heap in use while measuring.
	HeapPeak uint64 `json:"heap_peak_bytes"`
	// CoordinatorCPUSeconds and CoordinatorHeapPeak are the coordinator
	// processes' own (with CoordinatorExec): CPU while measuring, and the
	// peak of their heap in use (sampled every 0.5 s).
	CoordinatorCPUSeconds float64 `json:"coordinator_cpu_seconds,omitempty"`
	CoordinatorHeapPeak   uint64  `json:"coordinator_heap_peak_bytes,omitempty"`

	Publish  *PublishResult  `json:"baseline_publish,omitempty"`
	Pipeline *PipelineResult `json:"baseline_pipeline,omitempty"`
	// Ratio is SagasPerSec over the pipeline baseline's.
	Ratio float64 `json:"ratio,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Count <= 0 && c.Duration <= 0 {
		c.Count = 2000
	}
	if c.Warmup == 0 {
		c.Warmup = c.Concurrency
	}
	c.Coordinators, c.Participants = max(c.Coordinators, 1), max(c.Participants, 1)
	if c.ParticipantConcurrency <= 0 {
		c.ParticipantConcurrency = max(c.Concurrency, participant.DefaultConcurrency)
	}
	if c.Partitions <= 0 {
		c.Partitions = streams.DefaultPartitions
	}
	c.Replicas = max(c.Replicas, 1)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	return c
}

// Run runs the workload (then the baselines, if asked) and reports.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Dial == nil || cfg.Workload.Definition == nil {
		return nil, errors.New("bench: Config needs Dial and a Workload")
	}
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	dial := func(name string) (jetstream.JetStream, error) {
		nc, err := cfg.Dial(name)
		if err != nil {
			return nil, fmt.Errorf("bench: connect %s: %w", name, err)
		}
		closers = append(closers, nc.Close)
		return jetstream.New(nc)
	}
	statusNC, err := cfg.Dial("bench status")
	if err != nil {
		return nil, fmt.Errorf("bench: connect: %w", err)
	}
	closers = append(closers, statusNC.Close)
	fl, err := startFleet(ctx, cfg, statusNC)
	if err != nil {
		return nil, err
	}
	closers = append(closers, fl.stop)
	for i := range cfg.Participants {
		js, err := dial(fmt.Sprintf("bench participant %d", i))
		if err != nil {
			return nil, err
		}
		p, err := participant.New(js, participant.Config{Name: fmt.Sprintf("bench-%d", i), Logger: cfg.Logger,
			DisableBarrier: !cfg.Barrier, Concurrency: cfg.ParticipantConcurrency})
		if err != nil {
			return nil, err
		}
		if err := cfg.Workload.register(p); err != nil {
			return nil, err
		}
		if err := p.Start(ctx); err != nil {
			return nil, fmt.Errorf("bench: start participant: %w", err)
		}
		closers = append(closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = p.Stop(sctx)
		})
	}
	djs, err := dial("bench driver")
	if err != nil {
		return nil, err
	}
	d, err := newDriver(ctx, djs, cfg)
	if err != nil {
		return nil, err
	}
	defer d.close()

	// Warm up: streams, consumers, leases and caches are ready before the
	// clock starts.
	if cfg.Warmup > 0 {
		if _, err := d.run(ctx, cfg.Warmup, 0); err != nil {
			return nil, fmt.Errorf("bench: warmup: %w", err)
		}
	}

	rep := &Report{Workload: cfg.Workload.Name, Durability: cfg.Durability, Concurrency: cfg.Concurrency,
		Coordinators: cfg.Coordinators, Participants: cfg.Participants, Partitions: cfg.Partitions, Replicas: cfg.Replicas, Barrier: cfg.Barrier}
	before, logBefore, archBefore, err := writes(ctx, djs)
	if err != nil {
		return nil, err
	}
	cpu0 := procstat.CPUSeconds()
	stopHeap := sampleHeap()
	var stopCoord func() (float64, uint64)
	if len(cfg.CoordinatorExec) > 0 {
		stopCoord = sampleCoordinators(fl)
	}
	stopProfile, err := startCPUProfile(cfg.CPUProfile)
	if err != nil {
		return nil, err
	}
	res, err := d.run(ctx, cfg.Count, cfg.Duration)
	stopProfile()
	rep.HeapPeak = stopHeap()
	rep.CPUSeconds = procstat.CPUSeconds() - cpu0
	if stopCoord != nil {
		rep.CoordinatorCPUSeconds, rep.CoordinatorHeapPeak = stopCoord()
	}
	if err != nil {
		return nil, err
	}
	after, logAfter, archAfter, err := writes(ctx, djs)
	if err != nil {
		return nil, err
	}
	rep.Sagas, rep.Errors, rep.FirstError, rep.Elapsed = res.sagas, res.errors, res.firstError, res.elapsed
	rep.SagasPerSec = float64(res.sagas) / res.elapsed.Seconds()
	rep.P50, rep.P90, rep.P99, rep.Max = Percentiles(res.latencies)
	if res.sagas > 0 {
		rep.MsgsPerSaga = float64(after-before) / float64(res.sagas)
		rep.MsgsPerNode = rep.MsgsPerSaga / float64(cfg.Workload.Nodes)
		rep.LogBytesPerSaga = float64(logAfter-logBefore) / float64(res.sagas)
		rep.ArchiveBytesPerSaga = float64(archAfter-archBefore) / float64(res.sagas)
	}

	if cfg.Baseline {
		bcfg := BaselineConfig{Replicas: cfg.Replicas, InFlight: cfg.Concurrency, Count: max(res.sagas, 500), OutputSize: OutputSize}
		pub, err := PublishRate(ctx, djs, bcfg)
		if err != nil {
			return nil, err
		}
		cpu0 := procstat.CPUSeconds()
		pipe, err := Pipeline(ctx, djs, bcfg)
		if err != nil {
			return nil, err
		}
		pipe.CPUSeconds = procstat.CPUSeconds() - cpu0
		rep.Publish, rep.Pipeline = &pub, &pipe
		if pipe.SagasPerSec > 0 {
			rep.Ratio = rep.SagasPerSec / pipe.SagasPerSec
		}
	}
	return rep, nil
}

// startCPUProfile starts a CPU profile of the whole process into file,
// if it is set, and returns what stops it.
func startCPUProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writes sums the last sequences of every stream (the messages written so
// far), and returns the bytes in JETSAGA_LOG and JETSAGA_ARCHIVE.
func writes(ctx context.Context, js jetstream.JetStream) (n, logBytes, archiveBytes uint64, err error) {
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		n += info.State.LastSeq
		switch info.Config.Name {
		case streams.LogStream:
			logBytes = info.State.Bytes
		case streams.ArchiveStream:
			archiveBytes = info.State.Bytes
		}
	}
	if err := l.Err(); err != nil {
		return 0, 0, 0, fmt.Errorf("bench: list streams: %w", err)
	}
	return n, logBytes, archiveBytes, nil
}

// sampleHeap samples the heap in use every 100ms until the returned func
// is called, which returns the peak.
func sampleHeap() func() uint64 {
	var peak atomic.Uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak.Load() {
			peak.Store(ms.HeapInuse)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample()
			case <-stop:
				return
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		sample()
		return peak.Load()
	}
}

// sampleCoordinators samples the coordinator processes' heap every 0.5 s
// until the returned func is called, which returns their CPU seconds
// since and the peak heap.
func sampleCoordinators(fl *fleet) func() (float64, uint64) {
	cpu0, peak := processTotals(fl.statuses())
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if _, h := processTotals(fl.statuses()); h > peak {
					peak = h
				}
			case <-stop:
				return
			}
		}
	}()
	return func() (float64, uint64) {
		close(stop)
		<-done
		cpu, h := processTotals(fl.statuses())
		return cpu - cpu0, max(peak, h)
	}
}

// driver starts sagas and sees them finish on their log subjects.
type driver struct {
	cfg  Config
	cl   *client.Client
	sub  *nats.Subscription
	mu   sync.Mutex
	wait map[string]chan string // saga id → its outcome
}

// Markers of saga.finished in a log message, in the compact format and in
// a CloudEvents batch: messages without either are not decoded.
var (
	finishedCompact = []byte(`["end","`)
	finishedType    = []byte(events.TypeSagaFinished)
)

// outcomeOf returns the outcome of the saga.finished in log message data
// of saga id, or "" if it holds none.
func outcomeOf(id string, data []byte) (string, bool) {
	if !bytes.Contains(data, finishedCompact) && !bytes.Contains(data, finishedType) {
		return "", false
	}
	if parts, ok, err := events.SplitRollup(data); ok && err == nil && len(parts) > 0 {
		data = parts[len(parts)-1] // the last decision is the one that finishes
	}
	evs, err := events.DecodeLog(id, data)
	if err != nil {
		return "", false
	}
	for _, e := range evs {
		if f, ok := e.Data.(*events.SagaFinished); ok {
			return string(f.Outcome), true
		}
	}
	return "", false
}

func newDriver(ctx context.Context, js jetstream.JetStream, cfg Config) (*driver, error) {
	cl, err := client.New(ctx, js)
	if err != nil {
		return nil, err
	}
	d := &driver{cfg: cfg, cl: cl, wait: map[string]chan string{}}
	// One subscription sees every saga finish: the last message of a log
	// holds saga.finished with the outcome.
	d.sub, err = js.Conn().Subscribe(streams.LogSubject("*"), func(m *nats.Msg) {
		id := m.Subject[len(streams.LogSubject("")):]
		outcome, ok := outcomeOf(id, m.Data)
		if !ok {
			return
		}
		d.mu.Lock()
		ch := d.wait[id]
		delete(d.wait, id)
		d.mu.Unlock()
		if ch != nil {
			ch <- outcome
		}
	})
	if err != nil {
		return nil, err
	}
	if err := d.sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *driver) close() { _ = d.sub.Unsubscribe() }

type result struct {
	sagas, errors int
	firstError    string
	elapsed       time.Duration
	latencies     []time.Duration
}

// run runs count sagas (or, with count 0, sagas for dur), Concurrency at
// once.
func (d *driver) run(ctx context.Context, count int, dur time.Duration) (result, error) {
	var (
		mu  sync.Mutex
		res result
		wg  sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.errors++
		if res.firstError == "" {
			res.firstError = err.Error()
		}
	}
	var next atomic.Int64
	start := time.Now()
	deadline := start.Add(dur)
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if count > 0 {
			return next.Add(1) <= int64(count)
		}
		return time.Now().Before(deadline)
	}
	for range d.cfg.Concurrency {
		wg.Go(func() {
			for more() {
				lat, err := d.one(ctx)
				if err != nil {
					fail(err)
					continue
				}
				mu.Lock()
				res.sagas++
				res.latencies = append(res.latencies, lat)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// one runs one saga and returns its end-to-end latency: from the start
// request to its saga.finished observed.
func (d *driver) one(ctx context.Context) (time.Duration, error) {
	id := uuid.Must(uuid.NewV7()).String() // as client.Start makes them
	ch := make(chan string, 1)
	d.mu.Lock()
	d.wait[id] = ch
	d.mu.Unlock()
	forget := func() {
		d.mu.Lock()
		delete(d.wait, id)
		d.mu.Unlock()
	}
	t0 := time.Now()
	if _, err := d.cl.Start(ctx, d.cfg.Workload.Definition, nil, client.WithSagaID(id)); err != nil {
		forget()
		return 0, err
	}
	timer := time.NewTimer(d.cfg.Timeout)
	defer timer.Stop()
	select {
	case outcome := <-ch:
		lat := time.Since(t0)
		if outcome != d.cfg.Workload.Outcome {
			return 0, fmt.Errorf("saga %s ended %q, want %q", id, outcome, d.cfg.Workload.Outcome)
		}
		return lat, nil
	case <-timer.C:
		forget()
		return 0, fmt.Errorf("saga %s did not end within %s", id, d.cfg.Timeout)
	case <-ctx.Done():
		forget()
		return 0, ctx.Err()
	}
}
