package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/lease"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "status", args: "[flags] [--timeout 1s]", summary: "show every running coordinator: partitions, sagas in flight, counters", run: runStatus})
}

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "status", "[flags] [--timeout 1s]")
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "1s", "how long to gather coordinators' replies (every coordinator answers)")
	asJSON := fs.Bool("json", false, "print the coordinators' statuses as a JSON array")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	sts, err := coordinator.GatherStatusIn(ctx, nc, conn.ns(), conn.timeout)
	if err != nil {
		return err
	}
	if len(sts) == 0 {
		return fmt.Errorf("no coordinator answered on %s within %s: none is running (start one with jetsaga coordinator)", conn.ns().StatusSubject(), conn.timeout)
	}
	if *asJSON {
		return writeJSON(e.stdout, sts)
	}
	printStatus(e.stdout, sts, topologyPartitions(ctx, js, conn.ns()))
	if holders, err := lease.Holders(ctx, js, conn.ns()); err == nil && len(holders) > 0 {
		printLeases(e.stdout, holders)
	}
	return nil
}

// printLeases prints the lease table: which member holds each partition,
// with its epoch (the lease's revision), runs of one member folded.
func printLeases(w io.Writer, hs []lease.Holder) {
	fmt.Fprintln(w, "\nleases (partition: holder@revision; the revision moves on at each renewal, the epoch is the revision when taken)")
	var line []string
	for _, h := range hs {
		line = append(line, fmt.Sprintf("%d:%s@%d", h.Partition, h.Member, h.Epoch))
		if len(line) == 6 {
			fmt.Fprintln(w, "  "+strings.Join(line, "  "))
			line = nil
		}
	}
	if len(line) > 0 {
		fmt.Fprintln(w, "  "+strings.Join(line, "  "))
	}
}

// topologyPartitions is the partition count the topology records, or 0 if
// it cannot be read.
func topologyPartitions(ctx context.Context, js jetstream.JetStream, ns streams.Namespace) int {
	st, err := js.Stream(ctx, ns.WorkStream())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(st.CachedInfo().Config.Metadata["jetsaga.partitions"])
	return n
}

func printStatus(w io.Writer, sts []coordinator.Status, partitions int) {
	drivers := map[int][]string{}
	for _, st := range sts {
		for _, p := range st.Partitions {
			drivers[p.ID] = append(drivers[p.ID], st.Name)
		}
	}
	fmt.Fprintf(w, "%s answered", count(len(sts), "coordinator"))
	if partitions > 0 {
		var none, shared []int
		for p := range partitions {
			switch len(drivers[p]) {
			case 0:
				none = append(none, p)
			case 1:
			default:
				shared = append(shared, p)
			}
		}
		fmt.Fprintf(w, "; the topology has %d partitions", partitions)
		if len(none) == 0 && len(shared) == 0 {
			fmt.Fprint(w, ", each driven by one coordinator")
		}
		fmt.Fprintln(w)
		if len(none) > 0 {
			fmt.Fprintf(w, "WARNING: no coordinator drives partitions %s: their sagas do not advance\n", ranges(none))
		}
		if len(shared) > 0 {
			fmt.Fprintf(w, "WARNING: several coordinators drive partitions %s: they compete for inputs and lose write races\n", ranges(shared))
		}
	} else {
		fmt.Fprintln(w)
	}
	for _, st := range sts {
		fmt.Fprintln(w)
		printCoordinator(w, st)
	}
}

func printCoordinator(w io.Writer, st coordinator.Status) {
	ids := make([]int, len(st.Partitions))
	var loaded []string
	parts := append([]coordinator.PartitionStatus(nil), st.Partitions...)
	sort.Slice(parts, func(i, j int) bool { return parts[i].ID < parts[j].ID })
	for i, p := range parts {
		ids[i] = p.ID
		if p.Sagas > 0 {
			loaded = append(loaded, fmt.Sprintf("%d:%d", p.ID, p.Sagas))
		}
	}
	fmt.Fprintf(w, "coordinator %s\n", st.Name)
	fmt.Fprintf(w, "  partitions       %d: %s\n", len(ids), clipTo(ranges(ids), 100))
	inFlight := count(st.InFlightSagas, "saga") + ", " + count(int(st.InFlightRequests), "request")
	if len(loaded) > 0 {
		inFlight += " (sagas by partition " + clipTo(strings.Join(loaded, " "), 80) + ")"
	}
	fmt.Fprintf(w, "  in flight        %s\n", inFlight)
	var epochs []string
	for _, p := range parts {
		if p.Epoch > 0 {
			epochs = append(epochs, fmt.Sprintf("%d@%d", p.ID, p.Epoch))
		}
	}
	if len(epochs) > 0 {
		fmt.Fprintf(w, "  epochs           %s\n", clipTo(strings.Join(epochs, " "), 100))
	} else if st.Pinned {
		fmt.Fprintf(w, "  epochs           none: partitions pinned with -own, no leases\n")
	}
	fmt.Fprintf(w, "  leases           %d acquired, %d lost or handed off, %d appends fenced\n", st.LeasesAcquired, st.LeasesLost, st.Fenced)
	fmt.Fprintf(w, "  sagas            %d started, %d finished\n", st.Started, st.Finished)
	fmt.Fprintf(w, "  for an operator  %d stuck (a failed undo), %d waiting (a failed node)\n", st.Stuck, st.Waiting)
	fmt.Fprintf(w, "  recovery         %d recovered, %d failed, %d skipped (already driven), %d observed finished\n", st.Recovered, st.RecoveryFailures, st.Skipped, st.ObservedFinished)
	fmt.Fprintf(w, "  problems         %d inputs rejected, %d write conflicts\n", st.Rejected, st.Conflicts)
	if !st.LastRecovery.IsZero() {
		fmt.Fprintf(w, "  last recovery    %s (%s ago)\n", st.LastRecovery.Local().Format("2006-01-02 15:04:05"), time.Since(st.LastRecovery).Round(time.Second))
	}
	if lp := st.LastPass; !lp.At.IsZero() {
		fmt.Fprintf(w, "  last pass        partition %d at %s: %d listed, %d recovered, %d skipped, %d finished, %d failed\n",
			lp.Partition, lp.At.Local().Format("15:04:05"), lp.Listed, lp.Recovered, lp.Skipped, lp.Finished, lp.Failed)
	}
	if n := len(st.RecentRecoveries); n > 0 {
		fmt.Fprintf(w, "  recovered        %s\n", clipTo(strings.Join(st.RecentRecoveries[max(0, n-3):], " "), 120))
	}
	if len(st.RecentFailures) > 0 {
		fmt.Fprintf(w, "  recent failures  (%d, newest last)\n", len(st.RecentFailures))
		for _, f := range st.RecentFailures[max(0, len(st.RecentFailures)-5):] {
			fmt.Fprintf(w, "    %s\n", clipTo(f, 160))
		}
	}
}

// count writes n things, in the plural but for one.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
