package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// sagaData is the saga page's.
type sagaData struct {
	S        *client.Saga
	Width    float64
	Height   float64
	Nodes    []drawnNode
	Edges    []string       // SVG path data
	Details  map[string]any // node path → what a click shows (JSON in the page)
	Groups   []group
	Finished bool
	Actions  []action
	Done     string // the action just sent, if any
}

type drawnNode struct {
	Path, Label, Sub, State string
	X, Y                    float64
	// Marks are short flags drawn on the box: fault, retries, pivot...
	Marks []string
	// Class is the box's CSS classes: its state and kind.
	Class string
}

// group is one decision of the timeline: the events of one log message.
type group struct {
	Message int
	Time    time.Time
	Events  []client.Entry
}

// action is one operator action the saga's state allows, as a form.
type action struct {
	Name, Label, Node string
	// Field is the JSON input the action takes ("params", "output",
	// "data"), if any; Help says what it is.
	Field, Help string
	Danger      bool
}

func (s *Server) saga(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := streams.ValidateSagaID(id); err != nil {
		s.fail(w, http.StatusBadRequest, "%q is not a saga id (a lowercase UUID): check the id", id)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := s.cfg.Client.Status(ctx, id)
	if errors.Is(err, client.ErrNotFound) {
		s.fail(w, http.StatusNotFound, "no saga %s: it has no log (check the id; the sagas list has every saga kept)", id)
		return
	}
	if err != nil {
		s.fail(w, http.StatusBadGateway, "saga %s: %v", id, err)
		return
	}
	d := sagaData{S: st, Finished: st.Finished(), Done: r.URL.Query().Get("done")}
	d.draw()
	d.timeline()
	d.Actions = actionsFor(st)
	s.render(w, r, "saga", "Saga "+st.Name, d)
}

// draw lays the saga's DAG out.
func (d *sagaData) draw() {
	st := d.S
	index := map[string]int{}
	for i, n := range st.Nodes {
		index[n.Path] = i
	}
	parents := make([][]int, len(st.Nodes))
	for i, n := range st.Nodes {
		for _, p := range n.Parents {
			parents[i] = append(parents[i], index[p])
		}
	}
	l := layered(len(st.Nodes), parents)
	d.Width, d.Height = round(l.Width), round(l.Height)
	details := map[string]any{}
	for i, n := range st.Nodes {
		p := l.Nodes[i]
		dn := drawnNode{Path: n.Path, Label: lastName(n.Path), State: n.State, X: round(p.X), Y: round(p.Y),
			Class: "node s-" + n.State + " k-" + n.Kind}
		switch saga.Kind(n.Kind) {
		case saga.KindAction:
			dn.Sub = n.Action
		case saga.KindAwait:
			dn.Sub = "await " + n.Event
		case saga.KindSubsagaStart:
			dn.Label, dn.Sub = scopeName(n.Path)+" ▸", "subsaga start"
		case saga.KindSubsaga:
			dn.Label, dn.Sub = "◂ "+lastName(n.Path), "subsaga end"
		default:
			dn.Sub = n.Kind
		}
		if n.Fault != nil {
			dn.Marks = append(dn.Marks, "⚡ fault: "+n.Fault.String())
		}
		if n.Attempt > 1 {
			dn.Marks = append(dn.Marks, fmt.Sprintf("↻ %d attempts", n.Attempt))
		}
		if n.Pivot {
			dn.Marks = append(dn.Marks, "◆ pivot")
			dn.Class += " pivot"
		}
		if n.Held {
			dn.Marks = append(dn.Marks, "‖ waits for an operator")
			dn.Class += " held"
		}
		if n.State == "skipped" {
			dn.Marks = append(dn.Marks, "⤼ skipped: "+n.When+" was false")
		}
		if saga.Kind(n.Kind) == saga.KindAwait && n.State == "started" {
			dn.Marks = append(dn.Marks, "… waits for "+n.Event)
		}
		if n.Resolved != "" {
			dn.Marks = append(dn.Marks, "✎ resolved: "+n.Resolved)
		}
		if n.SkippedBy != "" {
			dn.Marks = append(dn.Marks, "✎ skipped: "+n.SkippedBy)
		}
		d.Nodes = append(d.Nodes, dn)
		details[n.Path] = n
	}
	for _, e := range l.Edges {
		var b strings.Builder
		for k, pt := range e.Points {
			if k == 0 {
				fmt.Fprintf(&b, "M%.1f %.1f", pt[0], pt[1])
				continue
			}
			prev := e.Points[k-1]
			mid := (prev[0] + pt[0]) / 2
			fmt.Fprintf(&b, " C%.1f %.1f %.1f %.1f %.1f %.1f", mid, prev[1], mid, pt[1], pt[0], pt[1])
		}
		d.Edges = append(d.Edges, b.String())
	}
	d.Details = details
}

func lastName(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }

// scopeName is the name of the subsaga a start node opens.
func scopeName(startPath string) string {
	scope := strings.TrimSuffix(startPath, "/"+saga.StartName)
	return lastName(scope)
}

// timeline groups the saga's events by the decision (log message) they
// came in.
func (d *sagaData) timeline() {
	for _, e := range d.S.Timeline {
		if n := len(d.Groups); n == 0 || d.Groups[n-1].Message != e.Message {
			d.Groups = append(d.Groups, group{Message: e.Message, Time: e.Time})
		}
		g := &d.Groups[len(d.Groups)-1]
		g.Events = append(g.Events, e)
	}
}

// actionsFor lists what an operator may do to the saga now.
func actionsFor(st *client.Saga) []action {
	if st.Finished() {
		return nil
	}
	var out []action
	for _, n := range st.Nodes {
		switch {
		case n.State == "undo_failed":
			out = append(out,
				action{Name: "retry", Label: "Retry the undo of " + n.Path, Node: n.Path},
				action{Name: "resolve", Label: "Resolve the undo of " + n.Path + " (done by other means)", Node: n.Path})
		case n.Held:
			out = append(out,
				action{Name: "retry", Label: "Retry " + n.Path, Node: n.Path, Field: "params", Help: "params (JSON, optional: replace the node's params)"},
				action{Name: "skip", Label: "Skip " + n.Path + " (treat as succeeded)", Node: n.Path, Field: "output", Help: "output (JSON, required)"})
		case n.Kind == string(saga.KindAwait) && (n.State == "started" || n.State == "pending") && n.Signal == nil:
			out = append(out,
				action{Name: "signal", Label: "Signal " + n.Path + " (" + n.Event + ")", Node: n.Path, Field: "data", Help: "data (JSON: the node's output)"},
				action{Name: "reject", Label: "Reject " + n.Path, Node: n.Path, Danger: true})
		}
	}
	if st.Status == client.StatusRunning || st.Status == client.StatusWaiting {
		if st.Pivot == "" {
			out = append(out, action{Name: "abort", Label: "Abort (unwind)", Danger: true})
		}
		if st.Paused {
			out = append(out, action{Name: "resume", Label: "Resume"})
		} else {
			out = append(out, action{Name: "pause", Label: "Pause"})
		}
	}
	if st.Status == client.StatusUnwinding && st.Paused {
		out = append(out, action{Name: "resume", Label: "Resume"})
	}
	return append(out, action{Name: "abandon", Label: "Abandon (end as it is, undo nothing more)", Danger: true})
}

// act carries out an operator's action, for a POST from the saga page.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("action")
	if !s.cfg.AllowActions {
		s.fail(w, http.StatusForbidden, "this console is read-only: start it with --allow-actions to act on sagas")
		return
	}
	if err := sameOrigin(r); err != nil {
		s.fail(w, http.StatusForbidden, "refused: %v", err)
		return
	}
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, "bad form: %v", err)
		return
	}
	if !hmacEqual(r.PostForm.Get("csrf"), s.csrf()) {
		s.fail(w, http.StatusForbidden, "refused: the form's token is missing or wrong (reload the saga's page)")
		return
	}
	if err := streams.ValidateSagaID(id); err != nil {
		s.fail(w, http.StatusBadRequest, "%q is not a saga id", id)
		return
	}
	node, reason := r.PostForm.Get("node"), strings.TrimSpace(r.PostForm.Get("reason"))
	if reason == "" {
		s.fail(w, http.StatusBadRequest, "a reason is required: it is recorded in the saga's log with who acted")
		return
	}
	value := strings.TrimSpace(r.PostForm.Get("value"))
	var raw json.RawMessage
	if value != "" {
		if !json.Valid([]byte(value)) {
			s.fail(w, http.StatusBadRequest, "%q is not JSON (a string is \"quoted\")", value)
			return
		}
		raw = json.RawMessage(value)
	}
	operator := s.operator(r)
	cl := s.cfg.Client.As(operator)
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var err error
	switch name {
	case "abort":
		err = cl.Abort(ctx, id, reason)
	case "pause":
		err = cl.Pause(ctx, id, reason)
	case "resume":
		err = cl.Resume(ctx, id, reason)
	case "abandon":
		err = cl.Abandon(ctx, id, reason)
	case "resolve":
		err = cl.Resolve(ctx, id, node, reason)
	case "retry":
		err = cl.Retry(ctx, id, node, reason, raw)
	case "skip":
		if raw == nil {
			s.fail(w, http.StatusBadRequest, "skip needs the node's output, as JSON")
			return
		}
		err = cl.Skip(ctx, id, node, raw, reason)
	case "signal":
		if raw == nil {
			raw = json.RawMessage("null")
		}
		err = cl.Signal(ctx, id, node, raw, client.WithSender(operator))
	case "reject":
		err = cl.Reject(ctx, id, node, reason, client.WithSender(operator))
	default:
		s.fail(w, http.StatusNotFound, "no action %q (abort, pause, resume, abandon, resolve, retry, skip, signal, reject)", name)
		return
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, "%s of saga %s: %v", name, id, err)
		return
	}
	s.cfg.Logger.Info("ui: operator action", "saga_id", id, "action", name, "node", node, "operator", operator, "reason", reason)
	http.Redirect(w, r, "/saga/"+id+"?done="+name, http.StatusSeeOther)
}
