package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/streams"
)

// The baselines are the yardstick jetsaga is measured against: the same
// JetStream traffic as a saga, written by hand, with no engine, no
// CloudEvents and no state machine. Keep them simple and honest: neither
// deliberately slow nor cutting corners the engine cannot cut.

// BaselineConfig configures the baselines.
type BaselineConfig struct {
	// Replicas of the baseline's streams (1 or 3; default 1). Storage is
	// file storage.
	Replicas int
	// InFlight is how many pipelines run at once (default 64).
	InFlight int
	// Count is how many pipelines (sagas) to run in all (default 2000);
	// PublishCount how many messages the publish baseline writes (default
	// 20000).
	Count, PublishCount int
	// Steps per pipeline (default 3).
	Steps int
	// OutputSize is the size in bytes of each step's request/reply payload
	// (default 100).
	OutputSize int
	// Prefix names the baseline's streams and subjects, so runs do not
	// collide (default "BENCHBASE"; subjects use its lower case).
	Prefix string
}

func (c BaselineConfig) withDefaults() BaselineConfig {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Replicas, 1)
	def(&c.InFlight, 64)
	def(&c.Count, 2000)
	def(&c.PublishCount, 20000)
	def(&c.Steps, 3)
	def(&c.OutputSize, 100)
	if c.Prefix == "" {
		c.Prefix = "BENCHBASE"
	}
	return c
}

// PublishResult is the raw publish baseline's result.
type PublishResult struct {
	Msgs       int           `json:"msgs"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	MsgsPerSec float64       `json:"msgs_per_sec"`
}

// PipelineResult is the pipeline baseline's result.
type PipelineResult struct {
	// Sagas is how many pipelines finished; Errors how many failed, the
	// first with FirstError.
	Sagas       int           `json:"sagas"`
	Errors      int           `json:"errors"`
	FirstError  string        `json:"first_error,omitempty"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	SagasPerSec float64       `json:"sagas_per_sec"`
	// P50 to Max are the end-to-end latencies of one pipeline, from its
	// first append to its final append's ack.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// MsgsPerSaga is JetStream messages written per pipeline (all three
	// streams, from their last sequences).
	MsgsPerSaga float64 `json:"msgs_per_saga"`
	// CPUSeconds is this process's CPU time while the pipeline ran (the
	// server and the pipeline's own clients), measured as the saga run's.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// PublishRate measures raw JetStream async publish throughput on a stream
// with cfg.Replicas: PublishCount messages of OutputSize bytes, with at
// most 256 acks outstanding, waiting for all acks. It creates its own
// stream (<Prefix>_PUB, subjects "<prefix>.pub.>") and deletes it at the
// end.
func PublishRate(ctx context.Context, js jetstream.JetStream, cfg BaselineConfig) (res PublishResult, err error) {
	cfg = cfg.withDefaults()
	name, subject := cfg.Prefix+"_PUB", strings.ToLower(cfg.Prefix)+".pub"
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	pjs, err := streams.Derive(js, jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}))
	if err != nil {
		return res, fmt.Errorf("bench: publish: jetstream context: %w", err)
	}
	defer pjs.CleanupPublisher()
	if _, err := createStream(ctx, js, cfg.Replicas, name, subject+".>"); err != nil {
		return res, fmt.Errorf("bench: publish: %w", err)
	}
	defer func() { err = errors.Join(err, deleteStreams(ctx, js, "publish", name)) }()

	payload := make([]byte, cfg.OutputSize)
	start := time.Now()
	for range cfg.PublishCount {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("bench: publish: %w", err)
		}
		// With 256 acks outstanding a publish waits for one (a slow R3
		// server may take longer than the default 200ms).
		if _, err := pjs.PublishAsync(subject+".msg", payload, jetstream.WithStallWait(pipelineTimeout)); err != nil {
			return res, fmt.Errorf("bench: publish: publish to %s: %w", subject+".msg", err)
		}
	}
	select {
	case <-pjs.PublishAsyncComplete():
	case <-ctx.Done():
		return res, fmt.Errorf("bench: publish: wait for acks: %w", ctx.Err())
	}
	res.Elapsed = time.Since(start)
	if n := failed.Load(); n > 0 {
		return res, fmt.Errorf("bench: publish: %d of %d publishes to %s failed, the first with: %w", n, cfg.PublishCount, name, *firstErr.Load())
	}
	res.Msgs = cfg.PublishCount
	res.MsgsPerSec = float64(res.Msgs) / res.Elapsed.Seconds()
	return res, nil
}

const (
	// Headers of requests and replies: which pipeline and which step.
	pipelineHeader, stepHeader = "Bench-Pipeline", "Bench-Step"
	// pipelineTimeout bounds one pipeline, like the engine bench's saga
	// timeout.
	pipelineTimeout = time.Minute
)

// Pipeline runs the hand-written pipeline: Count pipelines of Steps steps,
// InFlight at once. A step is an append to the pipeline's own log subject
// "<prefix>.log.<id>" (stream <Prefix>_LOG) with optimistic concurrency,
// waiting for its ack; a request to "<prefix>.work.<step>" (<Prefix>_WORK)
// carrying the previous step's output, waiting for its ack; and the
// worker's reply on "<prefix>.reply" (<Prefix>_REPLY) with OutputSize
// bytes of output. One final append marks the pipeline finished. Workers
// and driver read through durable pull consumers with explicit acks. The
// streams are created at the start and deleted at the end.
func Pipeline(ctx context.Context, js jetstream.JetStream, cfg BaselineConfig) (res PipelineResult, err error) {
	cfg = cfg.withDefaults()
	prefix := strings.ToLower(cfg.Prefix)
	names := []string{cfg.Prefix + "_LOG", cfg.Prefix + "_WORK", cfg.Prefix + "_REPLY"}
	subjects := []string{prefix + ".log.>", prefix + ".work.>", prefix + ".reply"}
	var created []string
	defer func() { err = errors.Join(err, deleteStreams(ctx, js, "pipeline", created...)) }()
	var strs []jetstream.Stream
	for i, name := range names {
		s, err := createStream(ctx, js, cfg.Replicas, name, subjects[i])
		if err != nil {
			return res, fmt.Errorf("bench: pipeline: %w", err)
		}
		created, strs = append(created, name), append(strs, s)
	}

	// The worker answers every request: it replies, and acks the request
	// once the reply is stored (from the reply's ack handler, so nothing
	// waits in the Consume callback).
	w := &pipeWorker{replySubject: prefix + ".reply", output: make([]byte, cfg.OutputSize), pending: map[*nats.Msg]jetstream.Msg{}}
	if w.js, err = streams.Derive(js,
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { w.settle(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { w.settle(m, err) })); err != nil {
		return res, fmt.Errorf("bench: pipeline: worker's jetstream context: %w", err)
	}
	defer w.js.CleanupPublisher()
	stopWorker, err := consume(ctx, strs[1], "worker", w.handle)
	if err != nil {
		return res, err
	}
	defer stopWorker()

	// The driver hands each reply to the pipeline waiting for it.
	d := &pipeDriver{waiting: map[string]chan jetstream.Msg{}}
	stopDriver, err := consume(ctx, strs[2], "driver", d.handle)
	if err != nil {
		return res, err
	}
	defer stopDriver()

	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	input := make([]byte, cfg.OutputSize)
	start := time.Now()
	for range min(cfg.InFlight, cfg.Count) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < cfg.Count && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				lat, err := runPipeline(ctx, js, d, prefix, strconv.Itoa(i), cfg.Steps, input)
				mu.Lock()
				if err != nil {
					if res.Errors++; res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					latencies = append(latencies, lat)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: pipeline: %w", err)
	}
	res.Sagas = len(latencies)
	res.SagasPerSec = float64(res.Sagas) / res.Elapsed.Seconds()
	res.P50, res.P90, res.P99, res.Max = Percentiles(latencies)

	// The streams were empty (createStream checks), so their last
	// sequences are what this run wrote.
	var written uint64
	for _, s := range strs {
		info, err := s.Info(ctx)
		if err != nil {
			return res, fmt.Errorf("bench: pipeline: stream %s info: %w", s.CachedInfo().Config.Name, err)
		}
		written += info.State.LastSeq
	}
	res.MsgsPerSaga = float64(written) / float64(cfg.Count)
	return res, nil
}

// runPipeline runs pipeline id to the end and returns its latency.
func runPipeline(ctx context.Context, js jetstream.JetStream, d *pipeDriver, prefix, id string, steps int, input []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, pipelineTimeout)
	defer cancel()
	replies := d.register(id)
	defer d.unregister(id)

	start := time.Now()
	logSubject := prefix + ".log." + id
	var seq uint64             // of the pipeline's last append; 0: none yet
	var recorded jetstream.Msg // the reply the next append records, acked once it has
	data := input
	for step := 1; ; step++ {
		entry := &nats.Msg{Subject: logSubject, Data: data}
		ack, err := js.PublishMsg(ctx, entry, jetstream.WithExpectLastSequencePerSubject(seq))
		if err != nil {
			return 0, fmt.Errorf("pipeline %s: append %d to %s: %w", id, step, logSubject, err)
		}
		seq = ack.Sequence
		if recorded != nil {
			_ = recorded.Ack() // if lost, the reply comes back and is ignored as stale
		}
		if step > steps {
			return time.Since(start), nil
		}

		stepID := strconv.Itoa(step)
		req := nats.NewMsg(prefix + ".work." + stepID)
		req.Header.Set(pipelineHeader, id)
		req.Header.Set(stepHeader, stepID)
		req.Data = data // the previous step's output (the input for the first)
		if _, err := js.PublishMsg(ctx, req); err != nil {
			return 0, fmt.Errorf("pipeline %s: request step %d on %s: %w", id, step, req.Subject, err)
		}
		if recorded, err = awaitReply(ctx, replies, stepID); err != nil {
			return 0, fmt.Errorf("pipeline %s: %w", id, err)
		}
		data = recorded.Data()
	}
}

// awaitReply returns the reply to step, dropping stale ones.
func awaitReply(ctx context.Context, replies <-chan jetstream.Msg, step string) (jetstream.Msg, error) {
	for {
		select {
		case m := <-replies:
			if m.Headers().Get(stepHeader) == step {
				return m, nil
			}
			_ = m.Ack() // a redelivered reply to an earlier step
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the reply to step %s: %w", step, ctx.Err())
		}
	}
}

// pipeDriver routes replies to the pipelines waiting for them.
type pipeDriver struct {
	mu      sync.Mutex
	waiting map[string]chan jetstream.Msg // by pipeline id
}

func (d *pipeDriver) register(id string) <-chan jetstream.Msg {
	ch := make(chan jetstream.Msg, 1) // a pipeline waits for one reply at a time
	d.mu.Lock()
	d.waiting[id] = ch
	d.mu.Unlock()
	return ch
}

func (d *pipeDriver) unregister(id string) {
	d.mu.Lock()
	delete(d.waiting, id)
	d.mu.Unlock()
}

func (d *pipeDriver) handle(m jetstream.Msg) {
	d.mu.Lock()
	ch := d.waiting[m.Headers().Get(pipelineHeader)]
	d.mu.Unlock()
	select {
	case ch <- m: // a nil ch (a pipeline that ended) never receives
	default:
		_ = m.Ack() // a redelivery nobody waits for
	}
}

// pipeWorker answers requests with OutputSize bytes of output.
type pipeWorker struct {
	js           jetstream.JetStream // its own, for its ack handlers
	replySubject string
	output       []byte
	mu           sync.Mutex
	pending      map[*nats.Msg]jetstream.Msg // reply → the request it answers
}

func (w *pipeWorker) handle(req jetstream.Msg) {
	reply := &nats.Msg{Subject: w.replySubject, Header: req.Headers(), Data: w.output}
	w.mu.Lock()
	w.pending[reply] = req // before publishing: the ack can come first
	w.mu.Unlock()
	if _, err := w.js.PublishMsgAsync(reply); err != nil {
		w.settle(reply, err)
	}
}

// settle acks the request reply answers once reply is stored, or gives it
// back to be answered again.
func (w *pipeWorker) settle(reply *nats.Msg, err error) {
	w.mu.Lock()
	req, ok := w.pending[reply]
	delete(w.pending, reply)
	w.mu.Unlock()
	switch {
	case !ok:
	case err != nil:
		_ = req.Nak()
	default:
		_ = req.Ack()
	}
}

// consume starts a durable pull consumer with explicit acks on s, handled
// by h, and returns what stops it and waits for its callbacks to end.
func consume(ctx context.Context, s jetstream.Stream, durable string, h jetstream.MessageHandler) (func(), error) {
	name := s.CachedInfo().Config.Name
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: -1, // InFlight bounds what is outstanding
	})
	if err != nil {
		return nil, fmt.Errorf("bench: pipeline: create consumer %s on %s: %w", durable, name, err)
	}
	cc, err := c.Consume(h)
	if err != nil {
		return nil, fmt.Errorf("bench: pipeline: consume %s on %s: %w", durable, name, err)
	}
	return func() { cc.Stop(); <-cc.Closed() }, nil
}

// createStream creates an empty file stream; it fails on a leftover of
// an earlier run, whose subjects and counts would collide.
func createStream(ctx context.Context, js jetstream.JetStream, replicas int, name, subject string) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", name, err)
	}
	if n := s.CachedInfo().State.LastSeq; n > 0 {
		return nil, fmt.Errorf("create stream %s: it exists and is not empty (last sequence %d): a leftover? delete it or use another prefix", name, n)
	}
	return s, nil
}

// deleteStreams deletes the streams even when ctx is done.
func deleteStreams(ctx context.Context, js jetstream.JetStream, what string, names ...string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	for _, name := range names {
		if err := js.DeleteStream(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("bench: %s: delete stream %s: %w", what, name, err))
		}
	}
	return errors.Join(errs...)
}

// Percentiles returns the p50, p90, p99 and max of lat (which it sorts);
// zeros for none.
func Percentiles(lat []time.Duration) (p50, p90, p99, max time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(lat)
	// Nearest rank: the smallest latency that pct percent of them do not
	// exceed.
	at := func(pct int) time.Duration { return lat[(pct*len(lat)+99)/100-1] }
	return at(50), at(90), at(99), lat[len(lat)-1]
}
