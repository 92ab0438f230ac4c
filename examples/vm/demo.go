package vm

import (
	"context"
	"fmt"
	"io"

	"github.com/jetsaga/jetsaga/client"
)

// Demo provisions two VMs, one that succeeds and one whose disk cannot be
// attached, so that everything done for it is released, and prints what
// happened to w.
func Demo(ctx context.Context, cl *client.Client, w io.Writer) ([]*client.Saga, error) {
	var out []*client.Saga
	for _, p := range []Params{{Name: "web-1"}, {Name: "web-2", FailAt: "attach"}} {
		id, err := cl.Start(ctx, Definition(), p)
		if err != nil {
			return out, err
		}
		fmt.Fprintf(w, "provision %s", p.Name)
		if p.FailAt != "" {
			fmt.Fprintf(w, " (fail_at %s)", p.FailAt)
		}
		fmt.Fprintf(w, ": saga %s started\n", id)
		s, err := cl.Wait(ctx, id)
		if err != nil {
			return out, err
		}
		fmt.Fprintf(w, "  %s", s.Status)
		if s.FailedNode != "" {
			n, _ := s.Node(s.FailedNode)
			fmt.Fprintf(w, ": %s failed (%s), so released, in order:\n", s.FailedNode, n.Error.Message)
			for _, path := range Released(s) {
				n, _ := s.Node(path)
				fmt.Fprintf(w, "    %-15s %s\n", path, n.Output)
			}
		} else {
			fmt.Fprintln(w)
			for _, n := range s.Nodes {
				if n.Kind == "action" && n.State == "succeeded" {
					fmt.Fprintf(w, "    %-15s %s\n", n.Path, n.Output)
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Released lists the action nodes of s whose undo finished, in the order
// they finished.
func Released(s *client.Saga) []string {
	var out []string
	for _, e := range s.Timeline {
		if e.Type != "node.undo_finished" {
			continue
		}
		if n, ok := s.Node(e.Node); ok && n.Kind == "action" {
			out = append(out, e.Node)
		}
	}
	return out
}
