package cli

import (
	"context"
	"fmt"

	"github.com/jetsaga/jetsaga/participant"
)

func init() {
	register(command{name: "examples", args: examplesArgs, summary: "run the example participants (trip, vm, payments, expense) until interrupted", run: runExamples})
}

const examplesArgs = "[flags] [--name N] [--metrics-addr :9465]"

// runExamples serves the examples' actions against a server: the
// participant processes of a deployment like examples/cluster.
func runExamples(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "examples", examplesArgs)
	conn := addConnFlags(fs)
	name := fs.String("name", "examples", "the participant's name (in logs, reply sources and barrier locks)")
	metricsAddr := addMetricsFlag(fs)
	otlp := addOTLPFlags(fs)
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
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	o, err := startOps(*metricsAddr, logger)
	if err != nil {
		return err
	}
	cfg := participant.Config{Namespace: conn.ns(), Name: *name, Logger: logger}
	if o != nil {
		defer stopWithin(o.Shutdown)
		cfg.Registerer = o.Registry
	}
	tp, err := otlp.provider(ctx, "jetsaga-examples")
	if err != nil {
		return err
	}
	if tp != nil {
		defer stopWithin(tp.Shutdown)
		cfg.TracerProvider = tp
	}
	p, err := participant.New(js, cfg)
	if err != nil {
		return err
	}
	for _, reg := range exampleParticipants {
		if err := reg(ctx, js, p); err != nil {
			return err
		}
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	logger.Info("example participants running; SIGINT or SIGTERM stops them", "name", *name, "server", nc.ConnectedUrlRedacted())
	<-ctx.Done()
	stopWithin(p.Stop)
	return nil
}
