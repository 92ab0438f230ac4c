package cli

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/bench"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "bench", args: benchArgs, summary: "measure sagas/s and latency of a workload, against raw JetStream in the same run", run: runBench})
}

const benchArgs = "[--workload linear-3] [--concurrency 64] [--count 2000 | --duration 30s] [--server URL] [--inproc] [--sync always] [--json]"

func runBench(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bench", benchArgs)
	var names []string
	for _, w := range bench.Workloads() {
		names = append(names, w.Name)
	}
	workload := fs.String("workload", "linear-3", "workload: "+strings.Join(names, ", "))
	concurrency := fs.Int("concurrency", 64, "sagas in flight at once")
	count := fs.Int("count", 2000, "sagas to run (after a warmup of --concurrency sagas)")
	duration := fs.Duration("duration", 0, "run for this long instead of --count sagas")
	coordinators := fs.Int("coordinators", 1, "coordinators, each with its own connection (in this process)")
	participants := fs.Int("participants", 1, "participants, each with its own connection (in this process)")
	partitions := fs.Int("partitions", streams.DefaultPartitions, "partitions of the topology")
	replicas := fs.Int("replicas", 1, "replicas of every stream; 3 without --server starts an embedded 3-node cluster")
	server := fs.String("server", "", "NATS server or cluster URL (default: an embedded single-node server)")
	inproc := fs.Bool("inproc", false, "connect to the embedded server in-process instead of over TCP loopback")
	syncMode := addSyncFlag(fs)
	barrier := fs.Bool("barrier", false, "keep the participants' idempotency barrier on (2 KV writes per node)")
	noBaseline := fs.Bool("no-baseline", false, "skip the baselines")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the whole run")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured run (whole process) to this file")
	procs := fs.Bool("coordinator-procs", false, "run the coordinators as child processes (jetsaga coordinator), to measure their own CPU and heap")
	history := fs.Int("history", 0, "run the workload, then write this many finished sagas into the log and index, then run it again: throughput with a long history")
	hold := fs.Int("hold", 0, "instead of a workload: start this many sagas that stay in flight, report the coordinators' heap, restart them and time the recovery")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	w, err := bench.LookupWorkload(*workload)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	always, err := syncMode.always()
	if err != nil {
		return err
	}
	if *replicas != 1 && *replicas != 3 {
		return fmt.Errorf("%w: --replicas is %d, want 1 or 3", errUsage, *replicas)
	}
	if *concurrency < 1 || *count < 1 || *duration < 0 {
		return fmt.Errorf("%w: --concurrency and --count must be positive", errUsage)
	}
	if *duration > 0 {
		*count = 0
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nodes := 1
	if *replicas == 3 && *server == "" {
		nodes = 3
	}
	t, err := bench.StartTarget(ctx, bench.TargetConfig{URL: *server, InProcess: *inproc, SyncAlways: always, Nodes: nodes})
	if err != nil {
		return err
	}
	defer t.Close()
	if !*asJSON {
		fmt.Fprintf(e.stderr, "running %s: %s\n", w.Name, w.Description)
	}
	var exec []string
	if *procs {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		exec = []string{self, "coordinator"}
	}
	bcfg := bench.Config{Workload: w, Concurrency: *concurrency, Count: *count, Duration: *duration,
		Coordinators: *coordinators, Participants: *participants, Partitions: *partitions, Replicas: *replicas,
		Barrier: *barrier, Baseline: !*noBaseline, Dial: t.Dial, URL: t.URL, Durability: t.Describe,
		CoordinatorExec: exec, CPUProfile: *cpuProfile}
	if *hold > 0 {
		hrep, err := bench.RunHold(ctx, bcfg, *hold, e.stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, hrep)
		}
		hrep.Print(e.stdout)
		return nil
	}
	rep, err := bench.Run(ctx, bcfg)
	if err != nil {
		return err
	}
	if *history > 0 {
		if !*asJSON {
			rep.Print(e.stdout)
			fmt.Fprintf(e.stdout, "\nwriting %d finished sagas into the history…\n", *history)
		}
		nc, err := t.Dial("bench history")
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		heapBefore := liveHeap()
		t0 := time.Now()
		if err := bench.PopulateHistory(ctx, js, *history); err != nil {
			return err
		}
		heapAfter := liveHeap()
		if !*asJSON {
			fmt.Fprintf(e.stdout, "written in %.1f s; live heap of this process (%s) %.1f MB before, %.1f MB after (%+.0f bytes per finished saga); running the workload again\n\n",
				time.Since(t0).Seconds(), heapWhat(t.Describe, exec != nil), float64(heapBefore)/1e6, float64(heapAfter)/1e6,
				(float64(heapAfter)-float64(heapBefore))/float64(*history))
		}
		before := rep
		if rep, err = bench.Run(ctx, bcfg); err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{"before_history": before, "after_history": rep, "history": *history,
				"heap_before_history_bytes": heapBefore, "heap_after_history_bytes": heapAfter, "heap_holds": heapWhat(t.Describe, exec != nil)})
		}
	}
	if *asJSON {
		return writeJSON(e.stdout, rep)
	}
	rep.Print(e.stdout)
	if rep.Errors > 0 {
		return fmt.Errorf("%d sagas failed; first: %s", rep.Errors, rep.FirstError)
	}
	return nil
}

// liveHeap is the heap in use by this process after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// heapWhat says what this process's heap holds besides the driver.
func heapWhat(server string, coordinatorProcs bool) string {
	var parts []string
	if !strings.HasPrefix(server, "server ") { // an embedded server (StartTarget)
		parts = append(parts, "the embedded NATS server")
	}
	parts = append(parts, "participants")
	if !coordinatorProcs {
		parts = append(parts, "coordinators")
	}
	return strings.Join(parts, ", ") + " and the driver"
}
