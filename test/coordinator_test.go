package test

import (
	"testing"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
)

func TestCoordinatorHappyPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := startRaw(t, e.js, succeedAll)
	id, err := e.cl.Start(ctxT(t), trip(), map[string]string{"traveller": "ada"})
	if err != nil {
		t.Fatal(err)
	}
	s := e.wait(id)
	if s.Status != client.StatusSucceeded {
		t.Fatalf("status %s", s.Status)
	}
	pay, _ := s.Node("pay")
	if string(pay.Output) != `{"node":"pay","op":"do"}` {
		t.Fatalf("pay output %s", pay.Output)
	}
	for _, r := range p.seen() {
		if r.Node == "pay" && len(r.Outputs) != 3 {
			t.Fatalf("pay saw outputs %v", r.Outputs)
		}
	}
}

func TestCoordinatorUnwinds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRaw(t, e.js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if req.Node == "car" && req.Op == events.OpDo {
			return nil, &events.Error{Kind: events.ErrorPermanent, Message: "no cars"}, true
		}
		return succeedAll(req)
	})
	id, err := e.cl.Start(ctxT(t), trip(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := e.wait(id)
	if s.Status != client.StatusUnwound || s.FailedNode != "car" {
		t.Fatalf("status %s failed node %q", s.Status, s.FailedNode)
	}
	for _, n := range []string{"flight", "hotel"} {
		if node, _ := s.Node(n); node.State != "undo_finished" && node.State != "pending" {
			t.Fatalf("%s is %s", n, node.State)
		}
	}
}
