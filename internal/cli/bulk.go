package cli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
)

// bulkFlags select sagas for an operator's command sent to many at once
// (abort, pause, resume, abandon without a saga id).
type bulkFlags struct {
	status, name, since, key, definition *string
	meta                                 metaFlag
	yes                                  *bool
}

func addBulkFlags(fs *flag.FlagSet) *bulkFlags {
	b := &bulkFlags{
		status:     fs.String("status", "", "without a saga id: the sagas in this state (running, paused, waiting, unwinding, stuck)"),
		name:       fs.String("name", "", "without a saga id: the sagas with this definition name"),
		since:      fs.String("since", "", "without a saga id: the sagas created since (a duration back from now, or a time)"),
		key:        fs.String("key", "", "without a saga id: the saga started with this idempotency key"),
		definition: fs.String("definition", "", "without a saga id: the sagas of this definition version"),
		meta:       metaFlag{},
		yes:        fs.Bool("yes", false, "without a saga id: act (without it, list the sagas that would be acted on)"),
	}
	fs.Var(b.meta, "meta", "without a saga id: the sagas with this metadata key=value (repeatable)")
	return b
}

// set reports whether any selection was given.
func (b *bulkFlags) set() bool {
	return *b.status != "" || *b.name != "" || *b.since != "" || *b.key != "" || *b.definition != "" || len(b.meta) > 0
}

// runBulk sends cmd to every unfinished saga the flags select: a dry run
// listing them unless --yes, then one at a time with a progress bar, each
// checked against its state as a single command is, and the failures
// listed at the end.
func (c operatorCmd) runBulk(ctx context.Context, e *env, conn *connFlags, b *bulkFlags, cmd events.OperatorCommand) error {
	name := string(c.action)
	f := client.Filter{Status: *b.status, Name: *b.name, Key: *b.key, Definition: *b.definition, Meta: b.meta}
	if f.Status == "paused" {
		f.Status, f.Paused = "", true
	}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		return fmt.Errorf("%w: --status %q is not a saga state (%v, or paused)", errUsage, *b.status, statuses)
	}
	if *b.since != "" {
		var err error
		if f.Since, err = parseSince(*b.since, time.Now()); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if c.needsReason && strings.TrimSpace(cmd.Reason) == "" {
		return fmt.Errorf("%w: --reason is required", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	cl, err := client.New(ctx, js, client.WithNamespace(conn.ns()), client.WithOperator(cmd.Operator))
	if err != nil {
		return err
	}
	// Only unfinished sagas can be acted on: the index has them all.
	sums, err := cl.InFlight(ctx)
	sums = slices.DeleteFunc(sums, func(s client.Summary) bool { return !f.Match(s) })
	if err != nil {
		return err
	}
	if len(sums) == 0 {
		fmt.Fprintf(e.stdout, "no unfinished saga matches: nothing to %s\n", name)
		return nil
	}
	if !*b.yes {
		fmt.Fprintf(e.stdout, "would %s %d saga(s):\n", name, len(sums))
		for _, s := range sums {
			fmt.Fprintf(e.stdout, "  %s  %s  %s\n", s.ID, s.Name, s.Status)
		}
		fmt.Fprintf(e.stdout, "dry run: add --yes to %s them\n", name)
		return nil
	}
	var failed []string
	for i, s := range sums {
		if _, err := c.sendOne(ctx, js, cl, s.ID, cmd); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", s.ID, err))
		}
		progress(e, i+1, len(sums), len(failed))
	}
	fmt.Fprintln(e.stderr)
	fmt.Fprintf(e.stdout, "%s sent for %d of %d saga(s) (by %s)\n", name, len(sums)-len(failed), len(sums), cmd.Operator)
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintf(e.stdout, "  failed: %s\n", f)
		}
		return fmt.Errorf("%d of %d failed (listed above)", len(failed), len(sums))
	}
	return nil
}

// progress draws a progress bar on stderr.
func progress(e *env, done, total, failed int) {
	const width = 30
	filled := width * done / total
	fmt.Fprintf(e.stderr, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
	if failed > 0 {
		fmt.Fprintf(e.stderr, ", %d failed", failed)
	}
}
