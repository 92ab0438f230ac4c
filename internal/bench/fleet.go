package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/streams"
)

// fleet is the coordinators under test: in this process, or child
// processes (so their CPU and heap can be told apart from the server's).
type fleet struct {
	cfg   Config
	stops []func()
	procs []*exec.Cmd
	nc    *nats.Conn // for status requests
}

// startFleet starts cfg.Coordinators coordinators.
func startFleet(ctx context.Context, cfg Config, nc *nats.Conn) (*fleet, error) {
	f := &fleet{cfg: cfg, nc: nc}
	for i := range cfg.Coordinators {
		if err := f.start(ctx, i); err != nil {
			f.stop()
			return nil, err
		}
	}
	return f, nil
}

func (f *fleet) start(ctx context.Context, i int) error {
	name := fmt.Sprintf("bench-%d", i)
	if argv := f.cfg.CoordinatorExec; len(argv) > 0 {
		if f.cfg.URL == "" {
			return errors.New("bench: coordinator processes need the server's URL")
		}
		cmd := exec.Command(argv[0], append(argv[1:], "--server", f.cfg.URL, "--name", name,
			"--partitions", strconv.Itoa(f.cfg.Partitions), "--replicas", strconv.Itoa(f.cfg.Replicas), "--log-level", "warn")...)
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("bench: start coordinator process: %w", err)
		}
		f.procs = append(f.procs, cmd)
		f.stops = append(f.stops, func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		return f.waitFor(ctx, i+1)
	}
	nc, err := f.cfg.Dial("bench coordinator " + name)
	if err != nil {
		return fmt.Errorf("bench: connect coordinator: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	c, err := coordinator.New(js, coordinator.Config{Name: name, Logger: f.cfg.Logger,
		Topology: streams.Config{Partitions: f.cfg.Partitions, Replicas: f.cfg.Replicas}})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("bench: start coordinator: %w", err)
	}
	f.stops = append(f.stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Stop(sctx)
		nc.Close()
	})
	return nil
}

// waitFor waits until n coordinators answer status requests and their
// partitions cover the topology.
func (f *fleet) waitFor(ctx context.Context, n int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		sts := f.statuses()
		covered := map[int]bool{}
		for _, st := range sts {
			for _, p := range st.Partitions {
				covered[p.ID] = true
			}
		}
		if len(sts) >= n && len(covered) == f.cfg.Partitions {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %d of %d coordinators answer, covering %d of %d partitions", len(sts), n, len(covered), f.cfg.Partitions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops every coordinator (gracefully: partitions are handed off).
func (f *fleet) stop() {
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
	f.stops, f.procs = nil, nil
}

// statuses asks every coordinator for its status.
func (f *fleet) statuses() []coordinator.Status {
	sts, _ := coordinator.GatherStatus(context.Background(), f.nc, 300*time.Millisecond)
	return sts
}

// processTotals sums the coordinators' CPU seconds and heap in use.
func processTotals(sts []coordinator.Status) (cpu float64, heap uint64) {
	for _, st := range sts {
		cpu += st.Process.CPUSeconds
		heap += st.Process.HeapInuse
	}
	return cpu, heap
}
