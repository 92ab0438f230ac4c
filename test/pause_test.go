package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
)

// A paused saga starts no new node: the request in flight finishes, and
// the next node starts only once the saga is resumed. Both are in the log.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	p := startRaw(t, e.js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if req.Node == "a" {
			<-release
		}
		return succeedAll(req)
	})
	def := saga.New("pausable").Then(saga.Action("a", "pause.a").Timeout(time.Minute)).Then(saga.Action("b", "pause.b")).MustBuild()
	ctx := ctxT(t)
	id, err := e.cl.Start(ctx, def, nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if len(p.seen()) == 0 {
			return fmt.Errorf("a's request not seen yet")
		}
		return nil
	})
	if err := e.cl.Pause(ctx, id, "maintenance"); err != nil {
		t.Fatal(err)
	}
	s, err := e.cl.WaitFor(ctx, id, func(s *client.Saga) bool { return s.Paused })
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	// a's success is recorded; b does not start in the same decision, as
	// it would unpaused.
	s, err = e.cl.WaitFor(ctx, id, func(s *client.Saga) bool { n, _ := s.Node("a"); return n.State == "succeeded" })
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Node("b"); b.State != "pending" || !s.Paused {
		t.Fatalf("paused saga: b is %s, paused %v", b.State, s.Paused)
	}
	if err := e.cl.Resume(ctx, id, "done"); err != nil {
		t.Fatal(err)
	}
	if s = e.wait(id); s.Status != client.StatusSucceeded || s.Paused {
		t.Fatalf("saga %s, paused %v", s.Status, s.Paused)
	}
	var kinds []string
	for _, en := range s.Timeline {
		if en.Type == "operator.pause" || en.Type == "operator.resume" {
			kinds = append(kinds, en.Type)
		}
	}
	if fmt.Sprint(kinds) != "[operator.pause operator.resume]" {
		t.Fatalf("log has %v", kinds)
	}
	for _, r := range p.seen() {
		if r.Node == "b" && r.Attempt > 1 {
			t.Fatalf("b ran %d attempts", r.Attempt)
		}
	}
}
