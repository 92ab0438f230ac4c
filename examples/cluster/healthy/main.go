// Command healthy waits until every stream of the cluster (the KV buckets'
// included) has a leader and all its replicas current: the point at which
// examples/cluster/run.sh may kill another node without taking a quorum
// away (three replicas survive one node down, not two).
//
//	go run ./examples/cluster/healthy --server nats://127.0.0.1:14301 --timeout 3m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	server := flag.String("server", nats.DefaultURL, "NATS URLs, comma-separated")
	timeout := flag.Duration("timeout", 3*time.Minute, "how long to wait")
	flag.Parse()
	began := time.Now()
	if err := wait(*server, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "healthy:", err)
		os.Exit(1)
	}
	fmt.Printf("every stream has all its replicas current (after %s)\n", time.Since(began).Round(100*time.Millisecond))
}

func wait(server string, timeout time.Duration) error {
	nc, err := nats.Connect(server, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := check(js)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func check(js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	if err := names.Err(); err != nil {
		return err
	}
	if len(all) == 0 {
		return errors.New("no streams")
	}
	for _, name := range all {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		cl := info.Cluster
		switch {
		case cl == nil:
			return fmt.Errorf("stream %s: no cluster info", name)
		case cl.Leader == "":
			return fmt.Errorf("stream %s: no leader", name)
		case len(cl.Replicas) != info.Config.Replicas-1:
			return fmt.Errorf("stream %s: %d followers, want %d", name, len(cl.Replicas), info.Config.Replicas-1)
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("stream %s: replica on %s not current (offline %v, lag %d)", name, r.Name, r.Offline, r.Lag)
			}
		}
	}
	return nil
}
