package trip

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jetsaga/jetsaga/client"
)

// Demo books two trips, one that succeeds and one that unwinds because the
// destination has no cars, and prints what happened to w.
func Demo(ctx context.Context, cl *client.Client, w io.Writer) ([]*client.Saga, error) {
	var out []*client.Saga
	for _, p := range []Params{{Traveller: "Ada", Destination: "Lisbon"}, {Traveller: "Bob", Destination: NoCars}} {
		id, err := cl.Start(ctx, Definition(), p)
		if err != nil {
			return out, err
		}
		fmt.Fprintf(w, "trip for %s to %s: saga %s started\n", p.Traveller, p.Destination, id)
		s, err := cl.Wait(ctx, id)
		if err != nil {
			return out, err
		}
		fmt.Fprintf(w, "  %s", s.Status)
		if s.FailedNode != "" {
			n, _ := s.Node(s.FailedNode)
			var undone []string
			for i := len(s.Nodes) - 1; i >= 0; i-- {
				if s.Nodes[i].State == "undo_finished" {
					undone = append(undone, s.Nodes[i].Path)
				}
			}
			fmt.Fprintf(w, ": %s failed (%s), so %s cancelled", s.FailedNode, n.Error.Message, strings.Join(undone, " then "))
		}
		fmt.Fprintln(w)
		for _, n := range s.Nodes {
			if n.State == "succeeded" {
				fmt.Fprintf(w, "    %-7s %s\n", n.Path, n.Output)
			}
		}
		out = append(out, s)
	}
	return out, nil
}
