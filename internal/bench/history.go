package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// PopulateHistory writes n finished sagas straight into the archive, as
// if they had run and left the log past their dedupe window: for each, the
// rollup a coordinator archives (one message holding a whole successful
// linear-3 run, in the compact format, referring to the stored definition)
// with its summary. It is how jetsaga bench measures throughput with a
// long history present without running it first.
func PopulateHistory(ctx context.Context, js jetstream.JetStream, n int) error {
	template, tmplID, created, err := finishedLog()
	if err != nil {
		return err
	}
	store, err := defs.Open(ctx, js, "")
	if err != nil {
		return err
	}
	if err := store.Put(ctx, created); err != nil { // so the history reads back
		return err
	}
	sum := index.Summary{ID: tmplID, Name: "bench.linear-3", Status: string(machine.StatusSucceeded), Created: time.Now().UTC(), Updated: time.Now().UTC()}
	sumTemplate, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	ajs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	rollup, err := events.EncodeRollup([][]byte{template})
	if err != nil {
		return err
	}
	old := []byte(tmplID)
	for i := range n {
		id := uuid.Must(uuid.NewV7()).String()
		m := streams.ArchiveMsg(id, bytes.ReplaceAll(rollup, old, []byte(id)), bytes.ReplaceAll(sumTemplate, old, []byte(id)))
		if _, err := ajs.PublishMsgAsync(m); err != nil {
			return fmt.Errorf("bench: history saga %d: %w", i, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finishedLog runs the machine through a successful linear-3 saga and
// returns its events as one log message, with the saga's id and its
// saga.created.
func finishedLog() ([]byte, string, *events.SagaCreated, error) {
	w, _ := LookupWorkload("linear-3")
	id := uuid.NewString()
	now := time.Now().UTC()
	d, err := machine.Decide(machine.New(id), machine.Start{Now: now, Created: events.SagaCreated{Definition: w.Definition, Params: json.RawMessage("null")}}, machine.Options{})
	if err != nil {
		return nil, "", nil, err
	}
	all := d.Events
	s := d.State
	for !s.Status.Finished() {
		var req *machine.SendRequest
		for _, c := range d.Commands {
			if r, ok := c.(machine.SendRequest); ok {
				req = &r
			}
		}
		if req == nil {
			return nil, "", nil, fmt.Errorf("bench: history template stopped at %s", s.Status)
		}
		out, _ := json.Marshal(map[string]string{"pad": "x"})
		d, err = machine.Decide(s, machine.Reply{Now: now, Reply: events.ActionReply{RequestID: req.ID, Op: events.OpDo,
			Node: req.Request.Node, Attempt: req.Request.Attempt, OK: true, Output: out}}, machine.Options{})
		if err != nil {
			return nil, "", nil, err
		}
		all, s = append(all, d.Events...), d.State
	}
	for i := range all {
		all[i].Source = events.SourceCoordinator + "/bench-history"
	}
	b, err := events.EncodeLog(id, all[0].TraceParent, all)
	return b, id, all[0].Data.(*events.SagaCreated), err
}
