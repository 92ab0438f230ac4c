package cli

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jetsaga/jetsaga/client"
)

func init() {
	register(command{name: "list", args: listArgs, summary: "list sagas, newest first", run: runList})
}

const listArgs = "[--status S] [--name N] [--since 1h|RFC3339] [--limit 50]"

var statuses = []string{client.StatusRunning, client.StatusWaiting, client.StatusUnwinding, client.StatusStuck, client.StatusSucceeded, client.StatusUnwound, client.StatusAbandoned}

func runList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "list", listArgs)
	conn := addConnFlags(fs)
	status := fs.String("status", "", "only sagas in this state: running, paused, waiting, unwinding, stuck, succeeded, unwound, abandoned")
	name := fs.String("name", "", "only sagas with this definition name")
	key := fs.String("key", "", "only the saga started with this idempotency key")
	meta := metaFlag{}
	fs.Var(meta, "meta", "only sagas with this metadata key=value (repeatable)")
	defRef := fs.String("definition", "", "only sagas of this definition version (its reference, as jetsaga show --json prints)")
	since := fs.String("since", "", "only sagas created since: a duration back from now (1h, 7d) or a time (RFC 3339)")
	limit := fs.Int("limit", 50, "print at most this many sagas (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	f := client.Filter{Status: *status, Name: *name, Key: *key, Meta: meta, Definition: *defRef}
	if f.Status == "paused" {
		f.Status, f.Paused = "", true // a flag of unfinished sagas, whatever their status
	}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		return fmt.Errorf("%w: --status %q is not a saga state (%v, or paused)", errUsage, f.Status, statuses)
	}
	if *limit < 0 {
		return fmt.Errorf("%w: --limit must not be negative", errUsage)
	}
	if *since != "" {
		if f.Since, err = parseSince(*since, time.Now()); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	nc, cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	sums, err := cl.List(ctx, f) // all of them, to say how many are left out
	if err != nil {
		return err
	}
	total := len(sums)
	if *limit > 0 && total > *limit {
		sums = sums[:*limit]
	}
	if *asJSON {
		if sums == nil {
			sums = []client.Summary{}
		}
		return writeJSON(e.stdout, sums)
	}
	if len(sums) == 0 {
		fmt.Fprintln(e.stdout, "no sagas")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	// NODE AT FAULT: what an operator looks at (the failed undo of a
	// stuck saga, the failed node of a waiting one, else the node whose
	// failure made it unwind).
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED\tUPDATED\tNODE AT FAULT")
	for _, s := range sums {
		st := s.Status
		if s.Paused {
			st += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, st, stamp(s.Created), stamp(s.Updated), s.Node)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if total > len(sums) {
		fmt.Fprintf(e.stderr, "(the newest %d of %d sagas; --limit 0 lists all)\n", len(sums), total)
	}
	return nil
}

// stamp formats a time for tables, in local time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
