package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// operatorCmd is one of the commands an operator sends a saga.
type operatorCmd struct {
	action events.OperatorAction
	args   string
	// node: the command names a node (retry, resolve).
	node bool
	// needsReason: the reason is recorded as why the command was right.
	needsReason bool
}

func init() {
	for _, c := range []struct {
		operatorCmd
		summary string
	}{
		{operatorCmd{action: events.ActionAbort, args: "[flags] SAGA_ID [--reason R] [--wait]  |  [--status S] [--name N] [--meta k=v] ... [--reason R] [--yes]"}, "make a running (or waiting) saga unwind; or every saga a filter selects"},
		{operatorCmd{action: events.ActionRetry, args: "[flags] SAGA_ID NODE [--params JSON] [--reason R] [--wait]", node: true},
			"run a failed undo of a stuck saga, or the failed node of a waiting saga, again"},
		{operatorCmd{action: events.ActionSkip, args: "[flags] SAGA_ID NODE --output JSON --reason R [--wait]", node: true, needsReason: true},
			"treat the failed node of a waiting saga as succeeded, with the given output"},
		{operatorCmd{action: events.ActionResolve, args: "[flags] SAGA_ID NODE --reason R [--wait]", node: true, needsReason: true}, "declare a failed undo done by other means"},
		{operatorCmd{action: events.ActionAbandon, args: "[flags] SAGA_ID [--reason R] [--wait]  |  [filters] [--reason R] [--yes]"}, "end a saga as it is, without undoing more; or every saga a filter selects"},
		{operatorCmd{action: events.ActionPause, args: "[flags] SAGA_ID [--reason R]  |  [filters] [--reason R] [--yes]"}, "hold a saga's new nodes back (requests already sent finish); or every saga a filter selects"},
		{operatorCmd{action: events.ActionResume, args: "[flags] SAGA_ID [--reason R] [--wait]  |  [filters] [--reason R] [--yes]"}, "let a paused saga go on; or every saga a filter selects"},
	} {
		register(command{name: string(c.action), args: c.args, summary: c.summary, run: c.run})
	}
}

func (c operatorCmd) run(ctx context.Context, e *env, args []string) error {
	name := string(c.action)
	fs := newFlags(e, name, c.args)
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "1m", "how long to wait for NATS and, with --wait, for the saga")
	reasonHelp := "why (recorded in the saga's log)"
	if c.needsReason {
		reasonHelp += "; required"
	}
	reason := fs.String("reason", "", reasonHelp)
	operator := fs.String("operator", operatorName(), "who acts, recorded in the saga's log (default $USER)")
	wait := fs.Bool("wait", false, "wait until the command has taken effect and the saga has ended, or is stuck or waiting again; print its status")
	var params, output *string
	switch c.action {
	case events.ActionRetry:
		params = fs.String("params", "", "JSON that replaces the params of a failed node's action from this retry on")
	case events.ActionSkip:
		output = fs.String("output", "", "the node's output, as JSON; required")
	}
	asJSON := fs.Bool("json", false, "print JSON")
	var bulk *bulkFlags
	if !c.node {
		bulk = addBulkFlags(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if bulk != nil && len(pos) == 0 && bulk.set() {
		cmd := events.OperatorCommand{Action: c.action, Operator: *operator, Reason: *reason}
		return c.runBulk(ctx, e, conn, bulk, cmd)
	}
	want := 1
	if c.node {
		want = 2
	}
	switch {
	case len(pos) != want && c.node:
		return fmt.Errorf("%w: want a saga id and a node", errUsage)
	case len(pos) != want && bulk != nil:
		return fmt.Errorf("%w: want one saga id, or filters (--status, --name, --since, --key, --meta, --definition) to %s many", errUsage, string(c.action))
	case len(pos) != want:
		return fmt.Errorf("%w: want one saga id", errUsage)
	case c.needsReason && strings.TrimSpace(*reason) == "":
		return fmt.Errorf("%w: --reason is required: the log records why the node counts as %s", errUsage, map[events.OperatorAction]string{events.ActionResolve: "undone", events.ActionSkip: "succeeded"}[c.action])
	case output != nil && !json.Valid([]byte(*output)):
		return fmt.Errorf("%w: --output must be JSON (a string is \"quoted\"), got %q", errUsage, *output)
	case params != nil && *params != "" && !json.Valid([]byte(*params)):
		return fmt.Errorf("%w: --params must be JSON, got %q", errUsage, *params)
	}
	cmd := events.OperatorCommand{Action: c.action, Operator: *operator, Reason: *reason}
	if params != nil && *params != "" {
		cmd.Params = json.RawMessage(*params)
	}
	if output != nil {
		cmd.Output = json.RawMessage(*output)
	}
	id, node := pos[0], ""
	if c.node {
		node = pos[1]
	}
	if err := sagaIDArg(id); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	cl, err := client.New(ctx, js, client.WithNamespace(conn.ns()), client.WithOperator(*operator))
	if err != nil {
		return err
	}
	cmd.Node = node
	r, err := c.sendOne(ctx, js, cl, id, cmd)
	if err != nil {
		return err
	}
	before := r.state.Events
	if !*wait {
		if *asJSON {
			return writeJSON(e.stdout, map[string]string{"id": id, "sent": name, "node": node, "operator": *operator})
		}
		what := name
		if node != "" {
			what += " of " + node
		}
		fmt.Fprintf(e.stdout, "%s sent for saga %s (by %s)\n", what, id, *operator)
		if c.action == events.ActionAbort && r.state.Paused {
			fmt.Fprintln(e.stdout, "the saga was paused: the abort resumes it, so that it unwinds")
		}
		return nil
	}
	s, err := cl.WaitFor(ctx, id, func(s *client.Saga) bool {
		return c.applied(s, before, node) && (c.action == events.ActionPause || s.Finished() || s.Status == client.StatusStuck || s.Status == client.StatusWaiting)
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("saga %s: the %s has not taken effect, or the saga has not ended, after %s (jetsaga show %s tells where it is)", id, name, conn.timeout, id)
		}
		return err
	}
	if *asJSON {
		if err := writeJSON(e.stdout, s); err != nil {
			return err
		}
	} else {
		printSaga(e.stdout, s)
	}
	switch s.Status {
	case client.StatusStuck:
		return fmt.Errorf("saga %s is stuck: waiting for an operator", id)
	case client.StatusWaiting:
		return fmt.Errorf("saga %s is waiting for an operator: %s failed (retry, skip or abort)", id, strings.Join(s.Held, ", "))
	}
	return nil
}

// applied reports whether the saga's log has the command's event after the
// first before events.
func (c operatorCmd) applied(s *client.Saga, before int, node string) bool {
	want := "operator." + string(c.action)
	for _, en := range s.Timeline[min(before, len(s.Timeline)):] {
		if en.Type == want && en.Node == node {
			return true
		}
	}
	return false
}

// failedUndos lists the nodes a retry, resolve or skip may name.
func failedUndos(st *machine.State, forNode bool) string {
	if !forNode || st.Graph == nil {
		return ""
	}
	var names []string
	for i, g := range st.Graph.Nodes {
		if st.Nodes[i].State == machine.NodeUndoFailed {
			names = append(names, g.Path)
		}
	}
	held := st.Held()
	switch {
	case len(names) == 0 && len(held) == 0:
		return fmt.Sprintf(" (no undo has failed and no failed node holds the saga; it is %s)", st.Status)
	case len(held) > 0:
		return " (failed nodes the saga waits on: " + strings.Join(held, ", ") + ")"
	}
	return " (failed undos: " + strings.Join(names, ", ") + ")"
}

// sendOne checks an operator's command against saga id's state, as the
// coordinator will (so a command the state does not allow is a clear error,
// not silence), and sends it. It returns the saga as it was.
func (c operatorCmd) sendOne(ctx context.Context, js jetstream.JetStream, cl *client.Client, id string, cmd events.OperatorCommand) (*replayed, error) {
	name := string(c.action)
	entries, err := streams.NewLogIn(js, cl.Namespace()).Load(ctx, id)
	if err != nil {
		return nil, noSaga(id, err)
	}
	r, err := replay(ctx, js, cl.Namespace(), id, entries)
	if err != nil {
		return nil, err
	}
	in, err := machine.OperatorInput(time.Now(), cmd)
	if err != nil {
		return nil, err
	}
	if _, err := machine.Decide(r.state, in, machine.Options{}); err != nil {
		var rej *machine.RejectedError
		if errors.As(err, &rej) {
			return nil, fmt.Errorf("cannot %s saga %s: %s%s", name, id, rej.Reason, failedUndos(r.state, c.node))
		}
		return nil, err
	}
	node, reason := cmd.Node, cmd.Reason
	switch c.action {
	case events.ActionAbort:
		err = cl.Abort(ctx, id, reason)
	case events.ActionRetry:
		err = cl.Retry(ctx, id, node, reason, cmd.Params)
	case events.ActionSkip:
		err = cl.Skip(ctx, id, node, cmd.Output, reason)
	case events.ActionResolve:
		err = cl.Resolve(ctx, id, node, reason)
	case events.ActionAbandon:
		err = cl.Abandon(ctx, id, reason)
	case events.ActionPause:
		err = cl.Pause(ctx, id, reason)
	case events.ActionResume:
		err = cl.Resume(ctx, id, reason)
	}
	if err != nil {
		return nil, noSaga(id, err)
	}
	return r, nil
}
