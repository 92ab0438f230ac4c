package payments

import (
	"context"
	"fmt"
	"io"

	"github.com/jetsaga/jetsaga/client"
)

// Resolution is the reason the demo's operator gives for resolving a
// refund that failed.
const Resolution = "refunded by hand at the bank"

// Demo places two orders and prints what happened to w. The first meets a
// slow bank: the charge's first attempt times out, the second is answered
// with the first one's charge. The second cannot be shipped and its refund
// fails while the bank is offline, so the saga is stuck; the demo then acts
// as an operator and resolves the refund.
func Demo(ctx context.Context, cl *client.Client, w io.Writer) ([]*client.Saga, error) {
	var out []*client.Saga

	p := Params{Order: "o-1", Amount: 42, ShipTo: "Lisbon", SlowBank: true}
	id, err := cl.Start(ctx, Definition(), p)
	if err != nil {
		return out, err
	}
	fmt.Fprintf(w, "order %s (%d to %s, slow bank): saga %s started\n", p.Order, p.Amount, p.ShipTo, id)
	s, err := cl.Wait(ctx, id)
	if err != nil {
		return out, err
	}
	ch, _ := s.Node("charge")
	fmt.Fprintf(w, "  %s: charge had %d attempts", s.Status, ch.Attempt)
	if ch.Attempt > 1 {
		fmt.Fprintf(w, " (the first timed out after %s)", ChargeTimeout)
	}
	fmt.Fprintf(w, " and charged once: %s\n", ch.Output)
	out = append(out, s)

	p = Params{Order: "o-2", Amount: 17, ShipTo: Nowhere, RefundOffline: true}
	if id, err = cl.Start(ctx, Definition(), p); err != nil {
		return out, err
	}
	fmt.Fprintf(w, "order %s (%d to %s, bank offline for refunds): saga %s started\n", p.Order, p.Amount, p.ShipTo, id)
	if s, err = cl.Wait(ctx, id); err != nil {
		return out, err
	}
	if s.Status != client.StatusStuck {
		fmt.Fprintf(w, "  %s\n", s.Status)
		return append(out, s), nil
	}
	failed, _ := s.Node(s.FailedNode)
	stuck := StuckNode(s)
	n, _ := s.Node(stuck)
	fmt.Fprintf(w, "  %s: %s failed (%s), then the undo of %s failed (%s)\n",
		s.Status, s.FailedNode, failed.Error.Message, stuck, n.Error.Message)
	fmt.Fprintf(w, "  operator: resolve %s: %q\n", stuck, Resolution)
	if err := cl.Resolve(ctx, id, stuck, Resolution); err != nil {
		return out, err
	}
	// Wait for the resolve to be in the log, then for the saga to end (or
	// get stuck again).
	s, err = cl.WaitFor(ctx, id, func(s *client.Saga) bool {
		n, _ := s.Node(stuck)
		return n.Resolved != "" && (s.Finished() || s.Status == client.StatusStuck)
	})
	if err != nil {
		return out, err
	}
	fmt.Fprintf(w, "  %s\n", s.Status)
	for i := len(s.Nodes) - 1; i >= 0; i-- {
		n := s.Nodes[i]
		fmt.Fprintf(w, "    %-8s ", n.Path)
		switch {
		case n.State == "failed":
			fmt.Fprintf(w, "failed: %s\n", n.Error.Message)
		case n.Resolved != "":
			fmt.Fprintf(w, "%s resolved by the operator: %s\n", n.Undo, n.Resolved)
		case n.State == "undo_finished":
			fmt.Fprintf(w, "%s done\n", n.Undo)
		default:
			fmt.Fprintf(w, "%s\n", n.State)
		}
	}
	return append(out, s), nil
}

// StuckNode is the node of s whose undo failed ("" if none).
func StuckNode(s *client.Saga) string {
	for _, n := range s.Nodes {
		if n.State == "undo_failed" {
			return n.Path
		}
	}
	return ""
}
