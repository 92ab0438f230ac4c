package expense

import (
	"context"
	"fmt"
	"io"

	"github.com/jetsaga/jetsaga/client"
)

// Demo files three claims and acts as the approvers and the operator,
// printing what happens to w:
//
//  1. A small claim: the manager approves, the director's approval is
//     skipped, the claim is paid and the receipt mailed.
//  2. A large claim: the manager approves, the director rejects it. The
//     claim unwinds: the budget is released and the manager told.
//  3. A claim whose receipt cannot be mailed: the payout (the pivot) has
//     gone, so the saga does not unwind; when the receipt's retries run
//     out it waits for an operator, who skips the receipt (sent by hand).
func Demo(ctx context.Context, cl *client.Client, w io.Writer) ([]*client.Saga, error) {
	var out []*client.Saga
	file := func(c Params) (string, error) {
		id, err := cl.Start(ctx, Definition(), c)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(w, "claim %s (%s, %d): saga %s started\n", c.Claim, c.Employee, c.Amount, id)
		return id, nil
	}
	waiting := func(id, node string) error {
		_, err := cl.WaitFor(ctx, id, func(s *client.Saga) bool {
			n, _ := s.Node(node)
			return n.State == "started" || s.Finished()
		})
		return err
	}
	approve := func(id, node, by string) error {
		if err := waiting(id, node); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s approves (jetsaga signal %s %s --data '{\"by\":%q}')\n", by, id, node, by)
		return cl.Signal(ctx, id, node, Approval{By: by}, client.WithSender(by))
	}
	finished := func(id string) (*client.Saga, error) {
		return cl.WaitFor(ctx, id, func(s *client.Saga) bool { return s.Finished() || s.Status == client.StatusWaiting })
	}

	// 1. A small claim.
	id, err := file(Params{Claim: "c-1", Employee: "ada", Amount: 120, Email: "ada@example.com"})
	if err != nil {
		return out, err
	}
	if err := approve(id, "manager", "grace"); err != nil {
		return out, err
	}
	s, err := finished(id)
	if err != nil {
		return out, err
	}
	d, _ := s.Node("director")
	fmt.Fprintf(w, "  %s: director %s (%s was false)\n", s.Status, d.State, d.When)
	out = append(out, s)

	// 2. A large claim the director rejects.
	if id, err = file(Params{Claim: "c-2", Employee: "alan", Amount: 4800, Email: "alan@example.com"}); err != nil {
		return out, err
	}
	if err := approve(id, "manager", "grace"); err != nil {
		return out, err
	}
	if err := waiting(id, "director"); err != nil {
		return out, err
	}
	fmt.Fprintf(w, "  the director rejects it (jetsaga signal %s director --reject 'over the travel budget')\n", id)
	if err := cl.Reject(ctx, id, "director", "over the travel budget", client.WithSender("barbara")); err != nil {
		return out, err
	}
	if s, err = finished(id); err != nil {
		return out, err
	}
	m, _ := s.Node("manager")
	fmt.Fprintf(w, "  %s: budget released, %s's approval withdrawn (%s)\n", s.Status, "grace", m.State)
	out = append(out, s)

	// 3. A receipt that cannot be mailed, after the payout.
	if id, err = file(Params{Claim: "c-3", Employee: "edsger", Amount: 60, Email: Bounce}); err != nil {
		return out, err
	}
	if err := approve(id, "manager", "grace"); err != nil {
		return out, err
	}
	if s, err = finished(id); err != nil {
		return out, err
	}
	r, _ := s.Node("receipt")
	if s.Status != client.StatusWaiting {
		fmt.Fprintf(w, "  %s\n", s.Status)
		return append(out, s), nil
	}
	fmt.Fprintf(w, "  %s: past pivot %s, the receipt failed (%s); the saga waits for an operator\n", s.Status, s.Pivot, r.Error.Message)
	fmt.Fprintf(w, "  operator: jetsaga skip %s receipt --output '{\"sent\":\"by hand\"}' --reason 'mailed from the office'\n", id)
	if err := cl.Skip(ctx, id, "receipt", map[string]string{"sent": "by hand"}, "mailed from the office"); err != nil {
		return out, err
	}
	if s, err = cl.WaitFor(ctx, id, func(s *client.Saga) bool { return s.Finished() }); err != nil {
		return out, err
	}
	fmt.Fprintf(w, "  %s\n", s.Status)
	return append(out, s), nil
}
