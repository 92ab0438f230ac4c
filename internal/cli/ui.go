package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/ui"
)

func init() {
	register(command{name: "ui", args: uiArgs, summary: "serve the operator's console in the browser until interrupted", run: runUI})
}

const uiArgs = "[flags] [--addr 127.0.0.1:4280] [--allow-actions] [--operator NAME] [--operator-header X-Forwarded-User]"

func runUI(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "ui", uiArgs)
	conn := addConnFlags(fs)
	addr := fs.String("addr", defaultUIAddr, "address to serve the console on")
	allow := fs.Bool("allow-actions", false, "offer the operator's actions (abort, retry, resolve, skip, signal...); read-only without")
	operator := fs.String("operator", operatorName(), "who actions are recorded as taken by (default $USER)")
	header := fs.String("operator-header", "", "a request header, set by an authenticating proxy in front, naming who acts (overrides --operator when present)")
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
	cctx, cancel := context.WithTimeout(ctx, conn.timeout)
	nc, js, err := conn.connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	defer nc.Close()
	cl, err := client.New(ctx, js, client.WithNamespace(conn.ns()))
	if err != nil {
		return err
	}
	console, err := ui.New(ui.Config{JS: js, Client: cl, AllowActions: *allow, Operator: *operator, OperatorHeader: *header, Logger: logger})
	if err != nil {
		return err
	}
	url, stop, err := serveConsole(*addr, console)
	if err != nil {
		return err
	}
	defer stop()
	mode := "read-only"
	if *allow {
		mode = "actions on, as " + *operator
	}
	fmt.Fprintf(e.stdout, "jetsaga ui: console at %s (%s)\n", url, mode)
	<-ctx.Done()
	return nil
}

// serveConsole serves h on addr and returns its URL and a stop.
func serveConsole(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("console: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is ours: it closes on stop
		}
	}()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
