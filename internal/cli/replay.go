package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/defs"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "replay", args: "[flags] SAGA_ID", summary: "print a saga's log as a timeline and the state it folds to", run: runReplay})
}

func runReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "replay", "[flags] SAGA_ID")
	conn := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	verify := fs.Bool("verify", true, "compare the fold with the state of the coordinator driving the saga (or with the saga index)")
	verifyWait := fs.Duration("verify-timeout", time.Second, "how long to wait for the coordinator's answer")
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
		return err
	}
	r, err := replay(ctx, js, conn.ns(), id, entries)
	var v *verification
	if err == nil && *verify {
		// A log that does not fold is the finding; there is nothing to
		// compare then.
		v = verifyReplay(ctx, nc, js, r, *verifyWait)
	}
	if *asJSON {
		view := r.jsonView()
		if v != nil {
			view["verification"] = v
		}
		if encErr := writeJSON(e.stdout, view); encErr != nil {
			return encErr
		}
	} else {
		r.print(e.stdout)
		if v != nil {
			fmt.Fprintln(e.stdout)
			v.print(e.stdout)
		}
	}
	if err == nil && v != nil {
		err = v.err()
	}
	return err
}

// replayed is a saga's log, decoded and folded.
type replayed struct {
	ns      streams.Namespace
	entries []sagalog.Message
	state   *machine.State
}

// replay decodes and folds a log, reading the definition it refers to
// from js's definitions bucket. It stops at the first bad message; what
// was read before it is returned with the error.
func replay(ctx context.Context, js jetstream.JetStream, ns streams.Namespace, id string, entries []streams.Entry) (*replayed, error) {
	r := &replayed{ns: ns, state: machine.New(id)}
	store, err := defs.Open(ctx, js, ns)
	if err != nil {
		return r, err
	}
	msgs, err := sagalog.DecodeAll(ctx, store, id, entries)
	for _, m := range msgs {
		if err := sagalog.Apply(r.state, m); err != nil {
			return r, err
		}
		r.entries = append(r.entries, m)
	}
	return r, err
}

func (r *replayed) print(w io.Writer) {
	for _, en := range r.entries {
		for i, ev := range en.Events {
			printEvent(w, en.N, i == 0, ev)
		}
	}
	s := r.state
	fmt.Fprintf(w, "\nsaga %s: %s (%d events in %d messages)\n", s.SagaID, s.Status, s.Events, len(r.entries))
	if s.Graph == nil {
		return
	}
	for i, g := range s.Graph.Nodes {
		n := s.Nodes[i]
		line := fmt.Sprintf("  %-24s %s", g.Path, n.State)
		if n.Error != nil {
			line += "  " + n.Error.String()
		}
		if n.Resolved != "" {
			line += "  resolved: " + n.Resolved
		}
		if n.Fault != nil {
			line += "  fault: " + n.Fault.String()
		}
		fmt.Fprintln(w, line)
	}
}

// printEvent prints an event as a timeline line; the first event of a log
// message shows the message's stream sequence.
func printEvent(w io.Writer, message int, first bool, ev events.Event) {
	s := ""
	if first {
		s = fmt.Sprintf("#%d", message)
	}
	fmt.Fprintf(w, "%-8s %s  %-28s %s\n", s, ev.Time.Local().Format("15:04:05.000"), client.ShortType(ev.Type()), describe(ev))
}

// describe says what an event carries, in one line.
func describe(ev events.Event) string {
	switch d := ev.Data.(type) {
	case *events.SagaCreated:
		return fmt.Sprintf("%s, %d nodes, params %s", d.Definition.Name, len(d.Definition.Nodes), clip(d.Params))
	case *events.NodeStarted:
		return fmt.Sprintf("%s attempt %d", d.Node, d.Attempt)
	case *events.NodeSucceeded:
		return fmt.Sprintf("%s → %s", d.Node, clip(d.Output))
	case *events.NodeAttemptFailed:
		return fmt.Sprintf("%s attempt %d: %s; retry at %s", d.Node, d.Attempt, d.Error, d.RetryAt.Format("15:04:05.000"))
	case *events.NodeFailed:
		return fmt.Sprintf("%s attempt %d: %s", d.Node, d.Attempt, d.Error)
	case *events.UndoStarted:
		return fmt.Sprintf("%s attempt %d", d.Node, d.Attempt)
	case *events.UndoAttemptFailed:
		return fmt.Sprintf("%s attempt %d: %s", d.Node, d.Attempt, d.Error)
	case *events.UndoFinished:
		return d.Node
	case *events.UndoFailed:
		return fmt.Sprintf("%s: %s", d.Node, d.Error)
	case *events.SagaUnwinding:
		if d.Node != "" {
			return fmt.Sprintf("%s (%s)", d.Reason, d.Node)
		}
		return string(d.Reason)
	case *events.SagaStuckV1:
		return fmt.Sprintf("on %s: %s", d.Node, d.Error)
	case *events.SagaStuck:
		parts := make([]string, len(d.Undos))
		for i, u := range d.Undos {
			parts[i] = fmt.Sprintf("%s (%s)", u.Node, u.Error)
		}
		return "undos failed: " + strings.Join(parts, ", ")
	case *events.SagaFinished:
		if len(d.Output) > 0 {
			return fmt.Sprintf("%s → %s", d.Outcome, clip(d.Output))
		}
		return string(d.Outcome)
	case *events.OperatorAbort:
		return fmt.Sprintf("by %s: %s", d.Operator, d.Reason)
	case *events.OperatorRetry:
		return fmt.Sprintf("%s by %s: %s", d.Node, d.Operator, d.Reason)
	case *events.OperatorResolve:
		return fmt.Sprintf("%s by %s: %s", d.Node, d.Operator, d.Reason)
	case *events.OperatorAbandon:
		return fmt.Sprintf("by %s: %s", d.Operator, d.Reason)
	case *events.OperatorPause:
		return fmt.Sprintf("by %s: %s", d.Operator, d.Reason)
	case *events.OperatorResume:
		return fmt.Sprintf("by %s: %s", d.Operator, d.Reason)
	case *events.FaultInjected:
		if d.Operator == "" {
			return fmt.Sprintf("%s: %s", d.Node, d.Fault)
		}
		return fmt.Sprintf("%s: %s, by %s: %s", d.Node, d.Fault, d.Operator, d.Reason)
	case *events.NodeRepeated:
		return fmt.Sprintf("%s attempt %d → %s (discarded: run again)", d.Node, d.Attempt, clip(d.Output))
	case *events.UndoRepeated:
		return fmt.Sprintf("%s attempt %d (run again)", d.Node, d.Attempt)
	}
	return ""
}

func clip(b json.RawMessage) string {
	s := string(b)
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func (r *replayed) jsonView() map[string]any {
	type ev struct {
		Seq     uint64          `json:"seq"`
		Message int             `json:"message"`
		ID      string          `json:"id"`
		Type    events.Type     `json:"type"`
		Time    time.Time       `json:"time"`
		Data    json.RawMessage `json:"data"`
	}
	var evs []ev
	for _, en := range r.entries {
		for _, e := range en.Events {
			data, _ := json.Marshal(e.Data)
			evs = append(evs, ev{Seq: en.Seq, Message: en.N, ID: e.ID, Type: e.Type(), Time: e.Time, Data: data})
		}
	}
	nodes := map[string]machine.Node{}
	if r.state.Graph != nil {
		for i, g := range r.state.Graph.Nodes {
			nodes[g.Path] = r.state.Nodes[i]
		}
	}
	return map[string]any{"saga_id": r.state.SagaID, "status": r.state.Status, "events": evs, "nodes": nodes}
}
