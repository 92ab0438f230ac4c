package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
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
	st, err := follow(ctx, nc, streams.NewLog(js), id, conn.timeout, func(seq uint64, evs []events.Event) error {
		if *asJSON {
			return writeLogged(e.stdout, seq, evs)
		}
		for i, ev := range evs {
			printEvent(e.stdout, seq, i == 0, ev)
		}
		return nil
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: watching ends there
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

// follow calls each with the events of every message of a saga's log (one
// decision), in order, as they are appended, until the saga has finished or is stuck (it then waits for
// an operator) or ctx ends; it returns the saga's state. A saga with no log
// yet is given grace to appear, since a start is decided shortly after it
// is sent.
func follow(ctx context.Context, nc *nats.Conn, log *streams.Log, id string, grace time.Duration, each func(seq uint64, evs []events.Event) error) (*machine.State, error) {
	// Subscribe before reading, so no append falls between the two.
	nudge := make(chan struct{}, 1)
	sub, err := nc.Subscribe(streams.LogSubject(id), func(*nats.Msg) {
		select {
		case nudge <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes soon after

	// Poll too, in case a nudge is lost.
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	appear := time.Now().Add(grace)
	st := machine.New(id)
	var last uint64
	for {
		entries, err := log.Read(ctx, id, last)
		if errors.Is(err, streams.ErrNotFound) {
			if time.Now().After(appear) {
				return nil, noSaga(id, err)
			}
		} else if err != nil {
			return nil, err
		}
		for _, en := range entries {
			evs, err := events.DecodeBatch(en.Data)
			if err != nil {
				return nil, fmt.Errorf("saga %s log message %d: %w", id, en.Seq, err)
			}
			if err := st.ApplyAll(evs); err != nil {
				return nil, fmt.Errorf("saga %s log message %d: %w", id, en.Seq, err)
			}
			if err := each(en.Seq, evs); err != nil {
				return nil, err
			}
			last = en.Seq
		}
		if st.Status.Finished() || st.Status == machine.StatusStuck {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-nudge:
		case <-poll.C:
		}
	}
}
