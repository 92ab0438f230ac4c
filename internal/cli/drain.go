package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "drain", args: drainArgs, summary: "hand a coordinator's partitions to the others before maintenance (--undo to take them back)", run: runDrain})
}

const drainArgs = "[flags] COORDINATOR_NAME [--undo] [--wait]"

func runDrain(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "drain", drainArgs)
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "1m", "how long to wait for the coordinator and, with --wait, for the others to take its partitions")
	undo := fs.Bool("undo", false, "let a drained coordinator take partitions again")
	wait := fs.Bool("wait", false, "wait until every partition is held by another coordinator")
	asJSON := fs.Bool("json", false, "print the coordinator's status as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want the name of one coordinator (jetsaga status lists them)", errUsage)
	}
	name := pos[0]
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	b, _ := json.Marshal(streams.DrainRequest{Coordinator: name, Undo: *undo})
	m, err := nc.RequestWithContext(ctx, conn.ns().DrainSubject(), b)
	if err != nil {
		return fmt.Errorf("no coordinator named %q answered (jetsaga status lists the running ones): %w", name, err)
	}
	var reply struct {
		coordinator.Status
		Error string `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return fmt.Errorf("coordinator %s answered with something else than its status: %w", name, err)
	}
	if reply.Error != "" {
		return fmt.Errorf("coordinator %s: %s", name, reply.Error)
	}
	if *wait && !*undo {
		want := topologyPartitions(ctx, js, conn.ns())
		for {
			sts, err := coordinator.GatherStatusIn(ctx, nc, conn.ns(), 300*time.Millisecond)
			if err != nil {
				return err
			}
			held := map[int]bool{}
			for _, st := range sts {
				if st.Name == name {
					continue
				}
				for _, p := range st.Partitions {
					held[p.ID] = true
				}
			}
			if want > 0 && len(held) == want {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("coordinator %s is drained, but the others hold %d of %d partitions after %s (is another coordinator running?)", name, len(held), want, conn.timeout)
			}
		}
	}
	if *asJSON {
		return writeJSON(e.stdout, reply.Status)
	}
	if *undo {
		fmt.Fprintf(e.stdout, "coordinator %s takes partitions again\n", name)
	} else {
		fmt.Fprintf(e.stdout, "coordinator %s drained: it holds %d partitions and takes none until jetsaga drain --undo %s\n", name, len(reply.Partitions), name)
	}
	return nil
}
