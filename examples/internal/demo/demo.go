// Package demo is the plumbing every example shares: connect to a NATS
// server (or run an embedded one with a coordinator), run the example's
// participants, and give the example a client.
package demo

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/participant"
)

// Env is a running example: its connection, client and participant.
type Env struct {
	JS     jetstream.JetStream
	Client *client.Client
	Logger *slog.Logger
	stop   []func()
}

// Options say where an example runs.
type Options struct {
	// Server is a NATS URL (e.g. jetsaga dev's); empty runs an embedded
	// server and a coordinator in this process.
	Server string
	// Dir stores the embedded server's data; empty uses a temporary one.
	Dir string
	// Logger, default: warnings and errors to stderr.
	Logger *slog.Logger
}

// Flags reads the options every example's command takes.
func Flags() Options {
	var o Options
	flag.StringVar(&o.Server, "server", "", "NATS URL to run against (e.g. jetsaga dev's nats://127.0.0.1:4222); empty runs an embedded server and a coordinator")
	flag.Parse()
	return o
}

// Start connects (or starts a server and coordinator), then registers the
// example's participants with register and starts them.
func Start(ctx context.Context, o Options, register func(context.Context, jetstream.JetStream, *participant.Participant) error) (*Env, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	e := &Env{Logger: logger}
	url := o.Server
	if url == "" {
		dir := o.Dir
		if dir == "" {
			d, err := os.MkdirTemp("", "jetsaga-example-")
			if err != nil {
				return nil, err
			}
			dir = d
			e.stop = append(e.stop, func() { os.RemoveAll(d) })
		}
		srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Port: -1})
		if err != nil {
			return nil, err
		}
		e.stop = append(e.stop, srv.Shutdown)
		url = srv.ClientURL()
	}
	nc, err := nats.Connect(url, nats.Name("jetsaga example"))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	e.stop = append(e.stop, nc.Close)
	e.JS, err = jetstream.New(nc)
	if err != nil {
		e.Close()
		return nil, err
	}
	if o.Server == "" {
		c, err := coordinator.New(e.JS, coordinator.Config{Name: "example", Logger: logger})
		if err != nil {
			e.Close()
			return nil, err
		}
		if err := c.Start(ctx); err != nil {
			e.Close()
			return nil, err
		}
		e.stop = append(e.stop, func() { stopWithin(c.Stop) })
	}
	p, err := participant.New(e.JS, participant.Config{Name: "example", Logger: logger})
	if err != nil {
		e.Close()
		return nil, err
	}
	if err := register(ctx, e.JS, p); err != nil {
		e.Close()
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		e.Close()
		return nil, err
	}
	e.stop = append(e.stop, func() { stopWithin(p.Stop) })
	if e.Client, err = client.New(ctx, e.JS, client.WithOperator("example")); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func stopWithin(stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = stop(ctx)
}

// Close stops what Start started, in reverse order.
func (e *Env) Close() {
	for i := len(e.stop) - 1; i >= 0; i-- {
		e.stop[i]()
	}
	e.stop = nil
}
