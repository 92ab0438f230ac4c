package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

func init() {
	register(command{name: "fault", args: faultArgs, summary: "inject a fault into a node of a running saga, or clear it (for testing)", run: runFault})
}

const faultArgs = "[flags] SAGA_ID NODE:SPEC [--reason R]"

const faultHelp = `SPEC is a comma-separated list of
  fail-action     the action fails for good without running; the saga unwinds
  fail-undo       the undo fails for good without running; the saga is stuck
  repeat=N        the action runs N times in all; the last output is kept
  undo-repeat=N   the undo runs N times in all
  delay=DUR       each action request is held back DUR (e.g. 2s)
  clear           remove the node's fault
A node has one fault: a new one replaces the old. Faults are recorded in the
saga's log and take effect at the node's next request.`

func runFault(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "fault", faultArgs)
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "1m", "how long to wait for NATS")
	reason := fs.String("reason", "", "why (recorded in the saga's log)")
	operator := fs.String("operator", operatorName(), "who acts, recorded in the saga's log (default $USER)")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprintln(e.stderr, "\n"+faultHelp) }
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: want a saga id and NODE:SPEC", errUsage)
	}
	id := pos[0]
	if err := sagaIDArg(id); err != nil {
		return err
	}
	f, err := parseFault(pos[1])
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	nc, cl, err := conn.dial(ctx, client.WithOperator(*operator))
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := cl.InjectFault(ctx, id, f, *reason); err != nil {
		return noSaga(id, err)
	}
	fmt.Fprintf(e.stdout, "fault of %s set to %s for saga %s (by %s)\n", f.Node, f.String(), id, *operator)
	return nil
}

// faultsFlag collects --fault flags.
type faultsFlag []events.Fault

func (f *faultsFlag) String() string { return fmt.Sprint(*f) }

func (f *faultsFlag) Set(s string) error {
	fault, err := parseFault(s)
	if err != nil {
		return err
	}
	*f = append(*f, fault)
	return nil
}

// parseFault parses NODE:SPEC (see faultHelp).
func parseFault(s string) (events.Fault, error) {
	i := strings.LastIndex(s, ":")
	if i <= 0 || i == len(s)-1 {
		return events.Fault{}, fmt.Errorf("fault %q: want NODE:SPEC, e.g. book-hotel:fail-action", s)
	}
	node, spec := s[:i], s[i+1:]
	f := events.Fault{Node: node}
	for item := range strings.SplitSeq(spec, ",") {
		key, val, hasVal := strings.Cut(strings.TrimSpace(item), "=")
		count := func() (int, error) {
			n, err := strconv.Atoi(val)
			if !hasVal || err != nil || n < 1 {
				return 0, fmt.Errorf("fault %q: %s wants a count of runs, e.g. %s=2", s, key, key)
			}
			return n, nil
		}
		var err error
		switch key {
		case "fail-action":
			f.FailAction = true
		case "fail-undo":
			f.FailUndo = true
		case "repeat":
			f.Repeat, err = count()
		case "undo-repeat":
			f.UndoRepeat, err = count()
		case "delay":
			var d time.Duration
			d, err = time.ParseDuration(val)
			if !hasVal || err != nil || d <= 0 {
				err = fmt.Errorf("fault %q: delay wants a duration, e.g. delay=2s", s)
			}
			f.Delay = saga.Duration(d)
		case "clear":
		default:
			return events.Fault{}, fmt.Errorf("fault %q: unknown %q (want fail-action, fail-undo, repeat=N, undo-repeat=N, delay=DUR or clear)", s, key)
		}
		if err != nil {
			return events.Fault{}, err
		}
	}
	if err := f.Validate(); err != nil {
		return events.Fault{}, fmt.Errorf("fault %q: %v", s, err)
	}
	return f, nil
}
