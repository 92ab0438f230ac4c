package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "watch", args: "[flags] SAGA_ID", summary: "print a saga's events as they are appended, until it ends", run: runWatch})
}

func runWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "watch", "[flags] SAGA_ID")
	conn := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print each event as a CloudEvent, one JSON object a line")
	id, err := parseSagaID(fs, args)
	if err != nil {
		return err
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	// A saga with no log yet is given the connection timeout to appear,
	// since a start is decided shortly after it is sent; the wait is said.
	if _, err := streams.NewLogIn(js, conn.ns()).Load(ctx, id); errors.Is(err, streams.ErrNotFound) {
		fmt.Fprintf(e.stderr, "no saga %s yet: waiting up to %s for it to start (check the id with jetsaga list)\n", id, conn.timeout)
	}
	store, err := defs.Open(ctx, js, conn.ns())
	if err != nil {
		return err
	}
	st, err := sagalog.Follow(ctx, nc, streams.NewLogIn(js, conn.ns()), store, id, conn.timeout, func(m sagalog.Message) error {
		if *asJSON {
			return writeLogged(e.stdout, m.N, m.Events)
		}
		for i, ev := range m.Events {
			printEvent(e.stdout, m.N, i == 0, ev)
		}
		return nil
	}, func(st *machine.State) bool {
		return st.Status.Finished() || st.Status == machine.StatusStuck || st.Status == machine.StatusWaiting
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: watching ends there
	}
	if errors.Is(err, streams.ErrNotFound) {
		return noSaga(id, err)
	}
	if err != nil {
		return err
	}
	summary := e.stdout
	if *asJSON {
		summary = e.stderr // stdout stays JSON lines
	}
	printEnd(summary, st)
	return nil
}

// printEnd says how a followed saga ended, or that it waits for an operator.
func printEnd(w io.Writer, st *machine.State) {
	fmt.Fprintf(w, "\nsaga %s: %s (%d events)\n", st.SagaID, st.Status, st.Events)
	if st.Status == machine.StatusWaiting {
		for _, node := range st.Held() {
			fmt.Fprintf(w, "waiting: %s failed; the saga waits for an operator: jetsaga retry|skip %s %s", node, st.SagaID, node)
			if st.PastPivot() == "" {
				fmt.Fprintf(w, ", or jetsaga abort %s", st.SagaID)
			}
			fmt.Fprintln(w)
		}
		return
	}
	if st.Status != machine.StatusStuck || st.Graph == nil {
		return
	}
	for i, g := range st.Graph.Nodes {
		if n := st.Nodes[i]; n.State == machine.NodeUndoFailed {
			why := ""
			if n.Error != nil {
				why = " (" + n.Error.String() + ")"
			}
			fmt.Fprintf(w, "stuck: the undo of %s failed%s; the saga waits for an operator: jetsaga retry|resolve %s %s, or jetsaga abandon %s\n",
				g.Path, why, st.SagaID, g.Path, st.SagaID)
		}
	}
}
