package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/saga"
)

func init() {
	register(command{name: "show", args: "[flags] SAGA_ID", summary: "draw a saga's DAG with each node's state, output and error", run: runShow})
}

func runShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "show", "[flags] SAGA_ID")
	conn := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print the saga's status as JSON")
	key := fs.String("key", "", "show the saga started with this idempotency key (instead of SAGA_ID)")
	var id string
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if *key != "" {
		if len(pos) > 0 {
			return fmt.Errorf("%w: give a saga id or --key, not both", errUsage)
		}
		id = client.SagaIDForKey(*key)
	} else if len(pos) != 1 {
		return fmt.Errorf("%w: want one saga id (or --key K)", errUsage)
	} else if id = pos[0]; sagaIDArg(id) != nil {
		return sagaIDArg(id)
	}
	nc, cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	s, err := cl.Status(ctx, id)
	if err != nil {
		return noSaga(id, err)
	}
	if *asJSON {
		return writeJSON(e.stdout, s)
	}
	printSaga(e.stdout, s)
	return nil
}

// outputWidth is how much of an output or error show prints when it
// cannot tell the terminal's width.
const outputWidth = 60

// detailWidth is how much of an output or error fits on a line of w:
// the terminal's width ($COLUMNS, or asked of the terminal) less what goes
// before it; 60 when w is not a terminal.
func detailWidth(w io.Writer) int {
	cols := 0
	if c, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && c > 0 {
		cols = c
	} else if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			cols = int(ws.Col)
		}
	}
	if cols == 0 {
		return outputWidth
	}
	return max(30, cols-45)
}

// stateMarks are the marks show puts before node and saga states.
var stateMarks = map[string]string{
	"pending": "·", "started": "▶", "succeeded": "✓", "failed": "✗",
	"undo_started": "↺", "undo_finished": "↩", "undo_failed": "‼", "skipped": "⤼",
	client.StatusRunning: "▶", client.StatusUnwinding: "↺", client.StatusStuck: "‼", client.StatusWaiting: "⏸",
	client.StatusUnwound: "↩", client.StatusAbandoned: "⊘",
}

func mark(state string) string {
	if m, ok := stateMarks[state]; ok {
		return m + " " + state
	}
	return "? " + state
}

// printSaga draws a saga: what it is and where it stands, then its DAG in
// topological order, one node a line, subsagas' nodes indented under them.
func printSaga(w io.Writer, s *client.Saga) {
	width := detailWidth(w)
	fmt.Fprintf(w, "saga      %s  %s\n", s.ID, s.Name)
	if s.Paused {
		by := ""
		for _, op := range s.Operations {
			if op.What == "operator.pause" || op.What == "saga.deadline_passed" {
				by = " by " + op.Operator
				if op.What == "saga.deadline_passed" {
					by = " by its deadline"
				}
				if op.Reason != "" && op.What == "operator.pause" {
					by += ": " + op.Reason
				}
			}
		}
		fmt.Fprintf(w, "status    %s, paused%s (jetsaga resume %s)\n", mark(s.Status), by, s.ID)
	} else {
		fmt.Fprintf(w, "status    %s\n", mark(s.Status))
	}
	if why := unwindWhy(s); why != "" {
		fmt.Fprintf(w, "reason    %s\n", why)
	}
	if s.Status == client.StatusStuck {
		for _, n := range s.Nodes {
			if n.State == "undo_failed" {
				fmt.Fprintf(w, "stuck     the undo of %s failed; the saga waits for an operator to run one of\n", n.Path)
				fmt.Fprintf(w, "            jetsaga retry %s %s\n            jetsaga resolve %s %s --reason R\n", s.ID, n.Path, s.ID, n.Path)
			}
		}
		fmt.Fprintf(w, "            jetsaga abandon %s\n", s.ID)
	}
	if s.Status == client.StatusWaiting {
		for _, path := range s.Held {
			fmt.Fprintf(w, "waiting   %s failed; the saga waits for an operator to run one of\n", path)
			fmt.Fprintf(w, "            jetsaga retry %s %s [--params JSON]\n            jetsaga skip %s %s --output JSON --reason R\n", s.ID, path, s.ID, path)
		}
		if s.Pivot == "" {
			fmt.Fprintf(w, "            jetsaga abort %s\n", s.ID)
		}
	}
	if s.Pivot != "" {
		fmt.Fprintf(w, "pivot     past %s: the saga no longer unwinds\n", s.Pivot)
	}
	if !s.Deadline.IsZero() {
		state := "not passed"
		if s.DeadlinePassed {
			state = "passed"
		}
		fmt.Fprintf(w, "deadline  %s (%s)\n", s.Deadline.Local().Format("2006-01-02 15:04:05.000 MST"), state)
	}
	if !s.Created.IsZero() {
		fmt.Fprintf(w, "created   %s  updated %s (%s later), %d events\n", s.Created.Local().Format("2006-01-02 15:04:05.000 MST"),
			s.Updated.Local().Format("15:04:05.000"), s.Updated.Sub(s.Created).Round(time.Millisecond), len(s.Timeline))
	}
	if s.IdempotencyKey != "" {
		fmt.Fprintf(w, "key       %s\n", s.IdempotencyKey)
	}
	if len(s.Metadata) > 0 {
		fmt.Fprintf(w, "metadata  %s\n", metaFlag(s.Metadata))
	}
	fmt.Fprintf(w, "params    %s\n", clipTo(string(s.Params), width+34))
	if len(s.Output) > 0 && string(s.Output) != "null" {
		fmt.Fprintf(w, "output    %s\n", clipTo(string(s.Output), width+34))
	}
	for _, op := range s.Operations {
		who := ""
		if op.Operator != "" {
			who = " by " + op.Operator
		}
		node := ""
		if op.Node != "" {
			node = " " + op.Node
		}
		why := ""
		if op.Reason != "" {
			why = ": " + op.Reason
		}
		fmt.Fprintf(w, "operator  %s %s%s%s%s\n", op.Time.Local().Format("15:04:05.000"), op.What, node, who, why)
	}
	fmt.Fprintln(w)
	for _, l := range dagLines(s, width) {
		fmt.Fprintln(w, "  "+l)
	}
}

// unwindWhy says why a saga unwinds (or unwound).
func unwindWhy(s *client.Saga) string {
	switch s.UnwindReason {
	case "":
		return ""
	case "aborted":
		return "aborted by an operator"
	}
	why := s.UnwindReason
	if s.FailedNode != "" {
		why = "node " + s.FailedNode + " failed"
		if n, ok := s.Node(s.FailedNode); ok && n.Error != nil {
			why += " (" + n.Error.String() + ")"
		}
	}
	return why
}

// dagItem is one line of the drawing: a node, or a subsaga standing for its
// start and end nodes, with the nodes inside it below.
type dagItem struct {
	name, state, after, detail string
	sub                        string // the subsaga's path, for its items
}

// dagLines draws the DAG as aligned lines.
func dagLines(s *client.Saga, width int) []string {
	byPath := map[string]client.Node{}
	for _, n := range s.Nodes {
		byPath[n.Path] = n
	}
	scopes := map[string][]dagItem{}
	for _, n := range s.Nodes {
		switch saga.Kind(n.Kind) {
		case saga.KindSubsaga: // drawn where its start is
		case saga.KindSubsagaStart:
			path := scopeOf(n.Path)
			end := byPath[path]
			it := dagItem{name: lastName(path), state: subsagaState(n, end), after: after(path, n.Parents), sub: path}
			if end.State == "succeeded" {
				it.detail = clipTo(string(end.Output), width)
			}
			scopes[scopeOf(path)] = append(scopes[scopeOf(path)], it)
		default:
			scopes[scopeOf(n.Path)] = append(scopes[scopeOf(n.Path)], dagItem{name: lastName(n.Path), state: nodeState(n), after: after(n.Path, n.Parents), detail: nodeDetail(n, width)})
		}
	}
	type row struct{ tree, state, after, detail string }
	var rows []row
	var walk func(scope, indent string)
	walk = func(scope, indent string) {
		items := scopes[scope]
		for i, it := range items {
			branch, next := "├─ ", "│  "
			if i == len(items)-1 {
				branch, next = "└─ ", "   "
			}
			rows = append(rows, row{indent + branch + it.name, it.state, it.after, it.detail})
			if it.sub != "" {
				walk(it.sub, indent+next)
			}
		}
	}
	walk("", "")
	var wTree, wState, wAfter int
	for _, r := range rows {
		wTree, wState, wAfter = max(wTree, runes(r.tree)), max(wState, runes(r.state)), max(wAfter, runes(r.after))
	}
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = strings.TrimRight(pad(r.tree, wTree)+"  "+pad(r.state, wState)+"  "+pad(r.after, wAfter)+"  "+r.detail, " ")
	}
	return lines
}

func nodeState(n client.Node) string {
	st := mark(n.State)
	switch {
	case n.State == "started" && n.Attempt > 1:
		st += fmt.Sprintf(" (attempt %d)", n.Attempt)
	case n.State == "undo_started" && n.UndoAttempt > 1:
		st += fmt.Sprintf(" (attempt %d)", n.UndoAttempt)
	case n.Resolved != "":
		st += " (resolved)"
	case n.SkippedBy != "":
		st += " (skipped by an operator)"
	case n.Held:
		st += " (waits for an operator)"
	case n.Kind == string(saga.KindAwait) && n.State == "started":
		st += " (waits for " + n.Event + ")"
	}
	if n.Pivot {
		st += " [pivot]"
	}
	if n.Fault != nil {
		st += " [fault: " + n.Fault.String() + "]"
	}
	return st
}

func nodeDetail(n client.Node, width int) string {
	switch {
	case n.Resolved != "":
		return clipTo("resolved: "+n.Resolved, width)
	case n.SkippedBy != "":
		return clipTo("skipped: "+n.SkippedBy+"; output "+string(n.Output), width)
	case n.State == "skipped" && n.When != "":
		return clipTo("when "+n.When+" was false", width)
	case n.State == "pending" && n.Signal != nil:
		return clipTo("signal "+n.Signal.ID+" kept for when it starts", width)
	case n.State == "failed" || n.State == "undo_failed":
		if n.Error != nil {
			return clipTo(n.Error.String(), width)
		}
	case n.State == "started" || n.State == "undo_started":
		if n.Error != nil {
			return clipTo("last attempt: "+n.Error.String(), width)
		}
	}
	if len(n.Output) > 0 {
		return clipTo(string(n.Output), width)
	}
	return ""
}

// subsagaState is a subsaga's state: its end node's, or while that is
// pending, whether the subsaga has started.
func subsagaState(start, end client.Node) string {
	switch {
	case end.State == "pending" && start.State == "succeeded":
		return mark("started")
	case end.State == "pending":
		return mark(start.State)
	case end.State == "undo_finished" && start.State != "undo_finished":
		return mark("undo_started")
	}
	return nodeState(end)
}

// after names a node's parents in its own scope; a subsaga's first nodes,
// whose parent is its start, have none.
func after(path string, parents []string) string {
	scope := scopeOf(path)
	var names []string
	for _, p := range parents {
		if lastName(p) == saga.StartName {
			continue
		}
		if scope != "" {
			p = strings.TrimPrefix(p, scope+"/")
		}
		names = append(names, p)
	}
	if len(names) == 0 {
		return ""
	}
	return "after " + strings.Join(names, ", ")
}

func scopeOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return ""
}

func lastName(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }

func runes(s string) int { return len([]rune(s)) }

func pad(s string, n int) string { return s + strings.Repeat(" ", max(0, n-runes(s))) }
