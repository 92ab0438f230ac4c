package cli

import (
	"context"
	"fmt"

	"github.com/jetsaga/jetsaga/events"
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
	entries, err := streams.NewLog(js).Read(ctx, id, 0)
	if err != nil {
		return noSaga(id, err)
	}
	// Each event is re-encoded alone: the log stores a decision's events as
	// one batch, audit tools want one event a line.
	for _, en := range entries {
		evs, err := events.DecodeBatch(en.Data)
		if err != nil {
			return fmt.Errorf("saga %s log message %d: %w", id, en.Seq, err)
		}
		for _, ev := range evs {
			b, err := events.Encode(ev)
			if err != nil {
				return fmt.Errorf("saga %s event %s: %w", id, ev.ID, err)
			}
			if _, err := fmt.Fprintf(e.stdout, "%s\n", b); err != nil {
				return err
			}
		}
	}
	return nil
}
