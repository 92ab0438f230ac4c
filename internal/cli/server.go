package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/internal/embedded"
)

func init() {
	register(command{name: "server", args: serverArgs,
		summary: "run a NATS server with JetStream, alone or as a cluster node, until interrupted", run: runServer})
}

const serverArgs = "-dir DIR [-host 127.0.0.1] [-port 4222] [-name N] [-cluster-port P -routes nats-route://host:port,...] [-cluster-name jetsaga] [-debug]"

// runServer runs the embedded NATS server as a process of its own, for a
// local cluster (three of these with routes to each other) and for tests
// that crash a node for real (SIGKILL) and bring it back from its store.
func runServer(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "server", serverArgs)
	dir := fs.String("dir", "", "JetStream store directory (required); a node restarted with the same -dir and -name finds its streams again")
	host := fs.String("host", embedded.DefaultHost, "interface to listen on, for clients and routes")
	port := fs.Int("port", embedded.DefaultPort, "client port (-1 for a random one)")
	name := fs.String("name", "", "server name; required with -cluster-port: unique in the cluster and the same across restarts (default "+embedded.DefaultServerName+")")
	clusterName := fs.String("cluster-name", embedded.DefaultClusterName, "cluster name, the same on every node")
	clusterPort := fs.Int("cluster-port", 0, "route port; 0 runs a single server, not a cluster node (-1 for a random one)")
	routes := fs.String("routes", "", "comma-separated route URLs of the other nodes, like nats-route://127.0.0.1:6223 (listing the node itself is harmless)")
	readyTimeout := fs.Duration("ready-timeout", time.Minute, "how long to wait for JetStream to answer (a cluster node needs a quorum of its nodes up)")
	debug := fs.Bool("debug", false, "print the NATS server's log on stderr")
	syncMode := addSyncFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}

	var problems []string
	if *dir == "" {
		problems = append(problems, "-dir is required (the JetStream store directory)")
	}
	var routeList []string
	for r := range strings.SplitSeq(*routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routeList = append(routeList, r)
		}
	}
	if *clusterPort == 0 && len(routeList) > 0 {
		problems = append(problems, "-routes needs -cluster-port (the port this node listens on for routes)")
	}
	if *clusterPort != 0 && *name == "" {
		problems = append(problems, "-name is required with -cluster-port: each node needs a name unique in the cluster and stable across restarts")
	}
	if *readyTimeout <= 0 {
		problems = append(problems, "-ready-timeout must be positive")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", errUsage, strings.Join(problems, "; "))
	}

	always, err := syncMode.always()
	if err != nil {
		return err
	}
	cfg := embedded.Config{Dir: *dir, Host: *host, Port: *port, ServerName: *name, Debug: *debug, SyncAlways: always}
	if *clusterPort != 0 {
		cfg.Cluster = &embedded.ClusterConfig{Name: *clusterName, Port: *clusterPort, Routes: routeList}
	}
	startCtx, cancel := context.WithTimeout(ctx, *readyTimeout)
	defer cancel()
	srv, err := embedded.Start(startCtx, cfg)
	if err != nil {
		return err
	}
	defer srv.Shutdown()

	got := srv.Config()
	detail := fmt.Sprintf("server %s, JetStream data in %s", got.ServerName, got.Dir)
	if got.Cluster != nil {
		detail += fmt.Sprintf("; cluster %s, routes on %s", got.Cluster.Name, srv.ClusterURL())
	}
	// Tests and scripts wait for this line: the server is ready when it
	// is printed.
	fmt.Fprintf(e.stdout, "jetsaga server: listening on %s (%s)\n", srv.ClientURL(), detail)

	<-ctx.Done()
	fmt.Fprintln(e.stdout, "jetsaga server: stopping")
	srv.Shutdown()
	fmt.Fprintln(e.stdout, "jetsaga server: stopped")
	return nil
}
