package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "coordinator", args: coordinatorArgs, summary: "run a coordinator until interrupted", run: runCoordinator})
}

const coordinatorArgs = "[flags] [-name N] [-partitions 16] [-own 0-31] [-replicas 1] [-max-in-flight N] [-retention 168h] [-log-level info] [-log-format text|json]"

func runCoordinator(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "coordinator", coordinatorArgs)
	conn := addConnFlags(fs)
	name := fs.String("name", "", "the coordinator's name in logs, status and the log's event sources (default host-pid)")
	partitions := fs.Int("partitions", 0, fmt.Sprintf("partitions of the topology, the same for every coordinator (default: the deployed topology's, or %d for a new one)", streams.DefaultPartitions))
	own := fs.String("own", "", "pin the partitions this coordinator drives, like 0-31 or 0-15,32-47, without leases (default: share all partitions with the running coordinators through leases)")
	leaseTTL := fs.Duration("lease-ttl", 0, "lease TTL: a dead coordinator's partitions are taken over after at most this long (default 10s)")
	replicas := fs.Int("replicas", 1, "replicas of every stream and bucket jetsaga creates (3 in a production cluster)")
	maxInFlight := fs.Int("max-in-flight", 0, "bound on requests awaiting replies or retries across all sagas (0: none)")
	maxPerSaga := fs.Int("max-in-flight-per-saga", 0, "bound on one saga's requests awaiting replies or retries (0: none)")
	retention := fs.Duration("retention", coordinator.DefaultRetention, "how long finished sagas are kept in the archive (JETSAGA_ARCHIVE's age limit, set when it is created); negative: forever")
	dedupe := fs.Duration("dedupe-window", coordinator.DefaultDedupeWindow, "how long a finished saga stays on its log subject, where a start with its id or idempotency key finds it (each costs the server a few hundred bytes meanwhile); negative: until purged")
	metricsAddr := addMetricsFlag(fs)
	otlp := addOTLPFlags(fs)
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGINT or SIGTERM, how long to let inputs being handled finish")
	logf := addLogFlags(fs, "info")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	logger, err := logf.logger(e.stderr)
	if err != nil {
		return err
	}
	cfg := coordinator.Config{
		Name:               *name,
		Logger:             logger,
		Topology:           streams.Config{Namespace: conn.ns(), Partitions: *partitions, Replicas: *replicas},
		LeaseTTL:           *leaseTTL,
		MaxInFlight:        *maxInFlight,
		MaxInFlightPerSaga: *maxPerSaga,
		RequestTimeout:     conn.timeout,
		Retention:          *retention,
		DedupeWindow:       *dedupe,
	}
	if *own != "" {
		if cfg.Partitions, err = parseRanges(*own); err != nil {
			return fmt.Errorf("%w: -own: %v", errUsage, err)
		}
	}
	if *drain <= 0 {
		return fmt.Errorf("%w: -drain-timeout must be positive", errUsage)
	}

	// A coordinator may start before its servers (a whole deployment
	// starting, a cluster restarting): it keeps trying to connect, and
	// Start retries until JetStream answers, saying so in the log.
	nc, js, err := conn.connect(ctx, nats.RetryOnFailedConnect(true))
	if err != nil {
		return err
	}
	defer nc.Close()
	// The connection reconnects for a while after losing the server; once
	// it gives up, the coordinator can do nothing more, so the process ends
	// with an error for its supervisor to restart it.
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		if err != nil { // nil: our own Close at the end
			logger.Warn("disconnected from NATS; reconnecting", "error", err)
		}
	})
	nc.SetReconnectHandler(func(nc *nats.Conn) { logger.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted()) })

	o, err := startOps(*metricsAddr, logger)
	if err != nil {
		return err
	}
	if o != nil {
		defer stopWithin(o.Shutdown)
		cfg.Registerer = o.Registry
	}
	tp, err := otlp.provider(ctx, "jetsaga-coordinator")
	if err != nil {
		return err
	}
	if tp != nil {
		defer stopWithin(tp.Shutdown)
		cfg.TracerProvider = tp
	}
	c, err := coordinator.New(js, cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if o != nil {
		o.Ready(c.Ready)
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	st := c.Status()
	ids := make([]int, len(st.Partitions))
	for i, p := range st.Partitions {
		ids[i] = p.ID
	}
	slices.Sort(ids)
	logger.Info("jetsaga coordinator running; SIGINT or SIGTERM stops it", "name", st.Name, "partitions", ranges(ids), "server", nc.ConnectedUrlRedacted())

	var lost error
	select {
	case <-ctx.Done():
	case <-closed:
		lost = errors.New("the connection to NATS is closed (reconnects ran out); stopping")
		logger.Error(lost.Error())
	}
	// ctx is done; the drain gets its own time.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *drain)
	defer cancel()
	logger.Info("stopping: finishing the inputs being handled", "drain_timeout", *drain)
	if err := c.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop: %w (inputs not finished stay in their streams for the next coordinator)", err)
	}
	return lost
}
