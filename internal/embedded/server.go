package embedded

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures an embedded server.
type Config struct {
	// Dir is the JetStream store directory. Required. A server restarted
	// with the same Dir (and ServerName) finds its streams again.
	Dir string

	// Host is the interface to listen on for clients and routes. Default
	// "127.0.0.1".
	Host string

	// Port is the client port. Default (0) 4222; -1 picks a free port (see
	// Server.ClientURL).
	Port int

	// ServerName names the server. Default "jetsaga-dev". Nodes of a
	// cluster need distinct names that stay the same across restarts.
	ServerName string

	// Cluster, if set, makes the server a node of a cluster.
	Cluster *ClusterConfig

	// SyncAlways makes the file store fsync every write before it is
	// acknowledged. Without it, writes are acknowledged from the OS page
	// cache and synced every 2 minutes (the NATS default): safe against a
	// process crash, not against a power loss.
	SyncAlways bool

	// Debug sends the server's log (notices, warnings, errors) to stderr.
	// Without it the server logs nothing; fatal errors are returned by
	// Start either way.
	Debug bool
}

// ClusterConfig makes a server a node of a cluster.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node. Default
	// "jetsaga".
	Name string

	// Host is the interface to listen on for routes. Default Config.Host.
	Host string

	// Port is the route port. Default (0) 6222; -1 picks a free port.
	Port int

	// Routes are the route URLs of the other nodes, such as
	// "nats://127.0.0.1:6223". Listing the node itself is harmless.
	Routes []string
}

// Defaults, as documented on Config and ClusterConfig.
const (
	DefaultHost        = "127.0.0.1"
	DefaultPort        = 4222
	DefaultServerName  = "jetsaga-dev"
	DefaultClusterName = "jetsaga"
	DefaultClusterPort = 6222

	// defaultStartTimeout bounds Start when ctx has no deadline.
	defaultStartTimeout = 30 * time.Second
	// pollInterval is the pause between readiness checks.
	pollInterval = 50 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	if c.Cluster != nil {
		cl := *c.Cluster
		if cl.Name == "" {
			cl.Name = DefaultClusterName
		}
		if cl.Host == "" {
			cl.Host = c.Host
		}
		if cl.Port == 0 {
			cl.Port = DefaultClusterPort
		}
		cl.Routes = append([]string(nil), cl.Routes...)
		c.Cluster = &cl
	}
	return c
}

// validate reports every problem of c (defaults applied) at once.
func (c Config) validate() ([]*url.URL, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.Dir == "" {
		bad("Dir is required (the JetStream store directory)")
	}
	if c.Port < -1 || c.Port > 65535 {
		bad("Port %d is out of range (-1 for a free port, 0 for %d)", c.Port, DefaultPort)
	}
	var routes []*url.URL
	if cl := c.Cluster; cl != nil {
		if cl.Port < -1 || cl.Port > 65535 {
			bad("Cluster.Port %d is out of range (-1 for a free port, 0 for %d)", cl.Port, DefaultClusterPort)
		}
		for i, r := range cl.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				bad("Cluster.Routes[%d] %q is not a route URL like nats://host:port", i, r)
				continue
			}
			routes = append(routes, u)
		}
	}
	return routes, errors.Join(errs...)
}

// Server is a running embedded NATS server.
type Server struct {
	ns  *server.Server
	cfg Config

	shutdown sync.Once
}

// Start starts a server and returns once it accepts connections and its
// JetStream answers (for a cluster node: once the cluster has a JetStream
// meta leader). ctx bounds the wait (30 s if it has no deadline); it does
// not bound the server's life, which ends with Shutdown.
//
// Start returns an error wrapping ErrInvalidConfig for a bad Config,
// ErrStartFailed when the server reports a fatal error (a port in use, an
// unusable Dir), and ErrNotReady when it is not ready in time. In every
// error case the server is shut down.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	routes, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		SyncAlways: cfg.SyncAlways,
		// The embedding process owns signals.
		NoSigs: true,
	}
	if cl := cfg.Cluster; cl != nil {
		opts.Cluster = server.ClusterOpts{Name: cl.Name, Host: cl.Host, Port: cl.Port}
		opts.Routes = routes
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStartFailed, err)
	}
	lg := newLogger(cfg.ServerName, cfg.Debug)
	ns.SetLogger(lg, false, false)

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	ns.Start()
	s := &Server{ns: ns, cfg: cfg}
	if err := s.waitReady(ctx, lg); err != nil {
		s.Shutdown()
		return nil, err
	}
	// Record the ports actually bound, so Config can restart the server
	// on the same ones.
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		s.cfg.Port = addr.Port
	}
	if cfg.Cluster != nil {
		if addr := ns.ClusterAddr(); addr != nil {
			s.cfg.Cluster.Port = addr.Port
		}
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, lg *logger) error {
	// Listening: the server's own check, in short slices so a fatal error
	// or ctx ends the wait promptly.
	for !s.ns.ReadyForConnections(pollInterval) {
		if err := lg.fatal(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %s not accepting connections: %w", ErrNotReady, s.cfg.ServerName, context.Cause(ctx))
		}
	}
	if err := lg.fatal(); err != nil {
		return err
	}

	nc, err := nats.Connect(s.ns.ClientURL(), nats.InProcessServer(s.ns), nats.Name("jetsaga-embedded-readiness"))
	if err != nil {
		return fmt.Errorf("%w: %s: connecting: %w", ErrNotReady, s.cfg.ServerName, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotReady, s.cfg.ServerName, err)
	}
	for {
		// Until a meta leader is elected, account info fails (or times
		// out); each try gets a short deadline so ctx's is respected.
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(tctx)
		cancel()
		if err == nil {
			return nil
		}
		if ferr := lg.fatal(); ferr != nil {
			return ferr
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %s: JetStream not answering: %w (last error: %w)", ErrNotReady, s.cfg.ServerName, context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// ClientURL is the URL clients connect to, such as "nats://127.0.0.1:4222".
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// ClusterURL is the URL other nodes route to ("" if not a cluster node).
func (s *Server) ClusterURL() string {
	if s.cfg.Cluster == nil {
		return ""
	}
	return "nats://" + net.JoinHostPort(s.cfg.Cluster.Host, strconv.Itoa(s.cfg.Cluster.Port))
}

// Config is the server's configuration with defaults applied and the ports
// it actually bound: starting a server with it after Shutdown brings the
// same node back.
func (s *Server) Config() Config {
	c := s.cfg
	if c.Cluster != nil {
		cl := *c.Cluster
		cl.Routes = append([]string(nil), cl.Routes...)
		c.Cluster = &cl
	}
	return c
}

// NATS returns the underlying server, for what this package does not cover.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server gracefully and waits until it has stopped. It
// is safe to call more than once.
func (s *Server) Shutdown() {
	s.shutdown.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}

// logger adapts the server's log to stderr (if debug) and remembers the
// first fatal error, which Start returns. The server's default logger would
// exit the process on a fatal error.
type logger struct {
	out *log.Logger // nil: discard

	mu       sync.Mutex
	fatalErr error
}

func newLogger(name string, debug bool) *logger {
	lg := &logger{}
	if debug {
		lg.out = log.New(os.Stderr, "[nats "+name+"] ", log.LstdFlags|log.Lmicroseconds)
	}
	return lg
}

func (l *logger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalErr
}

func (l *logger) logf(level, format string, v ...any) {
	if l.out != nil {
		l.out.Printf(level+" "+format, v...)
	}
}

func (l *logger) Noticef(format string, v ...any) { l.logf("[INF]", format, v...) }
func (l *logger) Warnf(format string, v ...any)   { l.logf("[WRN]", format, v...) }
func (l *logger) Errorf(format string, v ...any)  { l.logf("[ERR]", format, v...) }
func (l *logger) Debugf(format string, v ...any)  { l.logf("[DBG]", format, v...) }
func (l *logger) Tracef(format string, v ...any)  { l.logf("[TRC]", format, v...) }

func (l *logger) Fatalf(format string, v ...any) {
	l.logf("[FTL]", format, v...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatalErr == nil {
		l.fatalErr = fmt.Errorf("%w: %s", ErrStartFailed, fmt.Sprintf(format, v...))
	}
}
