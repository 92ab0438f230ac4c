package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/examples/expense"
	"github.com/jetsaga/jetsaga/examples/payments"
	"github.com/jetsaga/jetsaga/examples/trip"
	"github.com/jetsaga/jetsaga/examples/vm"
	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/internal/ops"
	"github.com/jetsaga/jetsaga/internal/ui"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "dev", args: "[-dir .jetsaga] [-port 4222] [-demo=false]",
		summary: "run everything on one machine: embedded NATS, a coordinator, the examples' participants", run: runDev})
}

// exampleParticipants are the examples whose participants dev runs.
var exampleParticipants = []func(context.Context, jetstream.JetStream, *participant.Participant) error{
	trip.Register,
	vm.Register,
	payments.Register,
	expense.Register,
}

// defaultUIAddr is where jetsaga dev and jetsaga ui serve the console.
const defaultUIAddr = "127.0.0.1:4280"

func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "dev", "[-dir .jetsaga] [-port 4222] [-demo=false] [-ui-addr 127.0.0.1:4280]")
	dir := fs.String("dir", ".jetsaga", "where the embedded server stores JetStream data")
	host := fs.String("host", embedded.DefaultHost, "address to listen on")
	port := fs.Int("port", embedded.DefaultPort, "client port (-1 for a random one)")
	demo := fs.Bool("demo", true, "run the trip example (one saga succeeds, one unwinds) the first time dev runs on a data directory")
	debug := fs.Bool("debug", false, "print the NATS server's log")
	namespace := fs.String("namespace", os.Getenv("JETSAGA_NAMESPACE"), "the namespace of the deployment dev runs (prefixes its streams, buckets and subjects; default $JETSAGA_NAMESPACE, else none)")
	uiAddr := fs.String("ui-addr", defaultUIAddr, "where to serve the console, with actions on (\"\" for none; if the default is taken, a free port)")
	syncMode := addSyncFlag(fs)
	metricsAddr := addMetricsFlag(fs)
	otlp := addOTLPFlags(fs)
	logf := addLogFlags(fs, "warn")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ns := streams.Namespace(*namespace)
	if err := ns.Validate(); err != nil {
		return fmt.Errorf("%w: --namespace: %v", errUsage, err)
	}
	logger, err := logf.logger(e.stderr)
	if err != nil {
		return err
	}
	always, err := syncMode.always()
	if err != nil {
		return err
	}
	srv, err := embedded.Start(ctx, embedded.Config{Dir: *dir, Host: *host, Port: *port, Debug: *debug, SyncAlways: always})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL(), nats.Name("jetsaga dev"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	o, err := startOps(*metricsAddr, logger)
	if err != nil {
		return err
	}
	var reg prometheus.Registerer
	if o != nil {
		defer stopWithin(o.Shutdown)
		reg = o.Registry
	}
	tp, err := otlp.provider(ctx, "jetsaga-dev")
	if err != nil {
		return err
	}
	var tracing trace.TracerProvider
	if tp != nil {
		defer stopWithin(tp.Shutdown)
		tracing = tp
	}
	coord, err := coordinator.New(js, coordinator.Config{Name: "dev", Topology: streams.Config{Namespace: ns}, Logger: logger, Registerer: reg, TracerProvider: tracing})
	if err != nil {
		return err
	}
	if o != nil {
		o.Ready(coord.Ready)
	}
	if err := coord.Start(ctx); err != nil {
		return err
	}
	defer stopWithin(coord.Stop)
	part, err := participant.New(js, participant.Config{Namespace: ns, Name: "dev-examples", Logger: logger, Registerer: reg, TracerProvider: tracing})
	if err != nil {
		return err
	}
	for _, reg := range exampleParticipants {
		if err := reg(ctx, js, part); err != nil {
			return err
		}
	}
	if err := part.Start(ctx); err != nil {
		return err
	}
	defer stopWithin(part.Stop)

	st := coord.Status()
	fmt.Fprintf(e.stdout, "jetsaga dev: NATS with JetStream at %s (data in %s)\n", srv.ClientURL(), *dir)
	fmt.Fprintf(e.stdout, "  coordinator %q drives %d partitions and resumes any unfinished sagas\n", st.Name, len(st.Partitions))
	fmt.Fprintf(e.stdout, "  streams: %s %s %s %s — try: nats --server %s stream view %s\n", ns.LogStream(), ns.ArchiveStream(), ns.WorkStream(), ns.TimerStream(), srv.ClientURL(), ns.LogStream())
	cl, err := client.New(ctx, js, client.WithNamespace(ns))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	// What an earlier run left unfinished, the coordinator now drives.
	if inflight, err := cl.InFlight(ctx); err == nil && len(inflight) > 0 {
		fmt.Fprintf(e.stdout, "  resumed %d unfinished saga(s) from the last run:\n", len(inflight))
		for i, s := range inflight {
			if i == 5 {
				fmt.Fprintf(e.stdout, "    … and %d more (jetsaga list --status running)\n", len(inflight)-5)
				break
			}
			fmt.Fprintf(e.stdout, "    %s %s (%s)\n", s.ID, s.Name, s.Status)
		}
	}
	// The demo runs once per data directory: a restart resumes, it does
	// not book two more trips.
	marker := filepath.Join(*dir, "demo-done")
	if _, err := os.Stat(marker); err == nil && *demo {
		fmt.Fprintln(e.stdout, "  (the trip demo ran on this data directory before; a new -dir runs it again)")
	} else if *demo {
		if _, err := trip.Demo(ctx, cl, e.stdout); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("demo: %w", err)
		}
		if ctx.Err() == nil {
			_ = os.WriteFile(marker, []byte("the trip demo ran here\n"), 0o644)
		}
	}
	if *uiAddr != "" && ctx.Err() == nil {
		console, err := ui.New(ui.Config{JS: js, Client: cl, AllowActions: true, Operator: operatorName(), Logger: logger})
		if err != nil {
			return err
		}
		url, stop, err := serveConsole(*uiAddr, console)
		if err != nil && *uiAddr == defaultUIAddr {
			url, stop, err = serveConsole("127.0.0.1:0", console) // the default port is taken
		}
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(e.stdout, "  console: %s (actions on, as %s)\n", url, operatorName())
	}
	fmt.Fprintln(e.stdout, "  an approval saga that waits for you: jetsaga start -f examples/expense/expense.yaml -params '{\"claim\":\"c-1\",\"employee\":\"ada\",\"amount\":120}',")
	fmt.Fprintln(e.stdout, "    then jetsaga signal SAGA_ID manager --data '{\"by\":\"you\"}' (examples/expense/README.md)")
	fmt.Fprintln(e.stdout, "Ready. Ctrl-C stops; the next `jetsaga dev` resumes unfinished sagas.")
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "jetsaga dev: stopping")
	return nil
}

// stopWithin stops a component, giving it a bounded time to drain.
func stopWithin(stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = stop(ctx)
}

// logFlags are the logging flags of long-running commands.
type logFlags struct{ level, format string }

func addLogFlags(fs *flag.FlagSet, level string) *logFlags {
	l := &logFlags{}
	fs.StringVar(&l.level, "log-level", level, "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	return l
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("%w: -log-level %q: want debug, info, warn or error", errUsage, l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: -log-format %q: want text or json", errUsage, l.format)
}

// syncFlag is the embedded server's fsync choice.
type syncFlag struct{ mode *string }

func addSyncFlag(fs *flag.FlagSet) syncFlag {
	return syncFlag{fs.String("sync", "default", "fsync of the embedded server's store: default (writes acknowledged from the page cache, synced every 2 min: survives a process crash, not a power loss) or always (fsync before every acknowledgement: survives a power loss, several times slower; see docs/performance.md)")}
}

func (f syncFlag) always() (bool, error) {
	switch *f.mode {
	case "default":
		return false, nil
	case "always":
		return true, nil
	}
	return false, fmt.Errorf("%w: --sync is %q, want default or always", errUsage, *f.mode)
}

func addMetricsFlag(fs *flag.FlagSet) *string {
	return fs.String("metrics-addr", "", "serve /metrics (Prometheus), /healthz and /readyz on this address, like :9464 (default: off)")
}

// startOps starts the operations HTTP server on addr, or returns nil for
// an empty addr.
func startOps(addr string, logger *slog.Logger) (*ops.Server, error) {
	if addr == "" {
		return nil, nil
	}
	o, err := ops.New(addr)
	if err != nil {
		return nil, err
	}
	o.Serve()
	logger.Info("serving /metrics, /healthz and /readyz", "addr", o.Addr())
	return o, nil
}

// otlpFlags configure exporting OpenTelemetry spans over OTLP/HTTP.
type otlpFlags struct {
	endpoint *string
	insecure *bool
}

func addOTLPFlags(fs *flag.FlagSet) otlpFlags {
	return otlpFlags{
		endpoint: fs.String("otlp-endpoint", "", "export OpenTelemetry spans over OTLP/HTTP to this host:port, like localhost:4318 (default: no tracing)"),
		insecure: fs.Bool("otlp-insecure", false, "OTLP over plain HTTP instead of HTTPS"),
	}
}

// provider returns a tracer provider exporting to the endpoint, and its
// shutdown, or nil without an endpoint.
func (f otlpFlags) provider(ctx context.Context, service string) (*sdktrace.TracerProvider, error) {
	if *f.endpoint == "" {
		return nil, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(*f.endpoint)}
	if *f.insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
