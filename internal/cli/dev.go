package cli

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "dev", args: "[-dir .jetsaga] [-port 4222]", summary: "run an embedded NATS server with jetsaga's streams, for development", run: runDev})
}

func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "dev", "[-dir .jetsaga] [-port 4222]")
	dir := fs.String("dir", ".jetsaga", "where the embedded server stores JetStream data")
	host := fs.String("host", embedded.DefaultHost, "address to listen on")
	port := fs.Int("port", embedded.DefaultPort, "client port (-1 for a random one)")
	debug := fs.Bool("debug", false, "print the NATS server's log")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	srv, err := embedded.Start(ctx, embedded.Config{Dir: *dir, Host: *host, Port: *port, Debug: *debug})
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
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "jetsaga dev: NATS with JetStream at %s (data in %s)\n", srv.ClientURL(), *dir)
	fmt.Fprintf(e.stdout, "  streams: %s, %s, %s\n", streams.LogStream, streams.WorkStream, streams.TimerStream)
	fmt.Fprintf(e.stdout, "  inspect: nats --server %s stream info %s\n", srv.ClientURL(), streams.LogStream)
	fmt.Fprintln(e.stdout, "Ctrl-C stops.")
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "jetsaga dev: stopping")
	return nil
}
