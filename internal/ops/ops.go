// Package ops serves what operators scrape and probe on a long-running
// jetsaga process: /metrics (Prometheus), /healthz (the process answers)
// and /readyz (it can do its work).
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the operations HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	// Registry is where the process's components register their metrics;
	// it has the Go runtime's and the process's collectors already.
	Registry *prometheus.Registry
	checks   []func() error
}

// New returns a server listening on addr (":9090", "127.0.0.1:0"); Serve
// starts it.
func New(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops: listen on %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{ln: ln, Registry: reg}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var errs []error
		for _, check := range s.checks {
			errs = append(errs, check())
		}
		if err := errors.Join(errs...); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Ready adds a readiness check: /readyz answers 503 with the errors of the
// checks that fail.
func (s *Server) Ready(check func() error) { s.checks = append(s.checks, check) }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() {
	go func() { _ = s.srv.Serve(s.ln) }()
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
