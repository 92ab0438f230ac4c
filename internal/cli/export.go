package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "export", args: "[flags] SAGA_ID", summary: "print a saga's log as CloudEvents, one JSON object a line", run: runExport})
}

func runExport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "export", "[flags] SAGA_ID")
	conn := addConnFlags(fs)
	id, err := parseSagaID(fs, args)
	if err != nil {
		return err
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	entries, err := streams.NewLogIn(js, conn.ns()).Load(ctx, id)
	if err != nil {
		return noSaga(id, err)
	}
	store, err := defs.Open(ctx, js, conn.ns())
	if err != nil {
		return err
	}
	msgs, err := sagalog.DecodeAll(ctx, store, id, entries)
	for _, m := range msgs {
		if err := writeLogged(e.stdout, m.N, m.Events); err != nil {
			return fmt.Errorf("saga %s: %w", id, err)
		}
	}
	return err
}

// writeLogged writes the events of one log message as CloudEvents, one a
// line: audit tools want one event a line, and the extension attributes
// keep which events were written together (events.EncodeLogged).
func writeLogged(w io.Writer, message int, evs []events.Event) error {
	for _, ev := range evs {
		b, err := events.EncodeLogged(ev, message, len(evs))
		if err != nil {
			return fmt.Errorf("event %s: %w", ev.ID, err)
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}
