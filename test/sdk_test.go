package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// effects is a participant's side effects, by idempotency key: what a real
// service would have done. A correct run leaves each key applied at most
// once, and an unwound saga none.
type effects struct {
	mu      sync.Mutex
	applied map[string]int // key → times the effect was applied
	live    map[string]bool
}

func newEffects() *effects { return &effects{applied: map[string]int{}, live: map[string]bool{}} }

// do applies the effect once per key, as an idempotent service would.
func (f *effects) do(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live[key] {
		f.applied[key]++
		f.live[key] = true
	}
}

func (f *effects) undo(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, key)
}

func (f *effects) forSaga(id string) (live []string, doubles []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.live {
		if strings.HasPrefix(k, id+":") {
			live = append(live, k)
		}
	}
	for k, n := range f.applied {
		if strings.HasPrefix(k, id+":") && n > 1 {
			doubles = append(doubles, k)
		}
	}
	return live, doubles
}

// startSDK runs a participant with the SDK for the actions given; fail
// says, per saga params and node, whether the action fails for good.
func startSDK(t *testing.T, js jetstream.JetStream, cfg participant.Config, fx *effects, actions []string, fail func(params, node string) bool) *participant.Participant {
	t.Helper()
	p, err := participant.New(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		err := p.Register(a,
			func(ctx context.Context, req *participant.Request) (any, error) {
				if fail != nil && fail(string(req.Params), req.Node) {
					return nil, participant.Permanent(fmt.Errorf("%s refuses", req.Node))
				}
				fx.do(req.IdempotencyKey)
				return map[string]string{"done": req.Node}, nil
			},
			func(ctx context.Context, req *participant.Request) (any, error) {
				fx.undo(req.IdempotencyKey)
				return nil, nil
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

func chain4() *saga.Definition {
	b := saga.New("chain")
	for _, n := range []string{"a", "b", "c", "d"} {
		b.Then(saga.Action(n, "chain."+n).Undo("chain.undo_" + n))
	}
	return b.MustBuild()
}

// Unwind at each node of a chain, with the Go SDK and its barrier: every
// saga unwinds, and leaves no effect behind.
func TestUnwindAtEachNodeOfAChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fx := newEffects()
	startSDK(t, e.js, participant.Config{}, fx, []string{"chain.a", "chain.b", "chain.c", "chain.d"},
		func(params, node string) bool { return params == `"`+node+`"` })
	ctx := ctxT(t)
	ids := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "none"} {
		id, err := e.cl.Start(ctx, chain4(), n)
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = id
	}
	for n, id := range ids {
		s := e.wait(id)
		live, doubles := fx.forSaga(id)
		switch {
		case n == "none" && (s.Status != client.StatusSucceeded || len(live) != 4):
			t.Errorf("no failure: %s with %d effects", s.Status, len(live))
		case n != "none" && (s.Status != client.StatusUnwound || s.FailedNode != n || len(live) != 0):
			t.Errorf("failure at %s: %s, failed node %q, effects left %v", n, s.Status, s.FailedNode, live)
		}
		if len(doubles) > 0 {
			t.Errorf("double effects: %v", doubles)
		}
	}
}

// Failures in parallel branches at once: the saga unwinds once, and what
// the other branches did is undone.
func TestParallelBranchesFailingAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fx := newEffects()
	startSDK(t, e.js, participant.Config{}, fx, []string{"fan.root", "fan.x", "fan.y", "fan.z"},
		func(params, node string) bool { return node == "x" || node == "y" })
	def := saga.New("fan").
		Then(saga.Action("root", "fan.root").Undo("fan.undo_root")).
		Parallel(
			saga.Action("x", "fan.x").Undo("fan.undo_x"),
			saga.Action("y", "fan.y").Undo("fan.undo_y"),
			saga.Action("z", "fan.z").Undo("fan.undo_z"),
		).MustBuild()
	id, err := e.cl.Start(ctxT(t), def, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := e.wait(id)
	live, _ := fx.forSaga(id)
	if s.Status != client.StatusUnwound || len(live) != 0 {
		t.Fatalf("status %s, effects left %v", s.Status, live)
	}
	unwinding := 0
	for _, en := range s.Timeline {
		if en.Type == "saga.unwinding" {
			unwinding++
		}
	}
	if unwinding != 1 {
		t.Fatalf("%d unwinding events", unwinding)
	}
}

// A participant killed in the middle of an action (its connection gone, no
// Stop): the request is delivered again to another participant once the ack
// wait and the barrier's lock run out, the action runs there, and the
// saga finishes with no effect applied twice.
func TestParticipantKilledMidAction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fx := newEffects()
	actions := []string{"chain.a", "chain.b", "chain.c", "chain.d"}
	// The first participant gets stuck in b after applying its effect, and
	// is then killed.
	stuck := make(chan struct{})
	release := make(chan struct{})
	nc1, js1 := natstest.Connect(t, e.url)
	p1, err := participant.New(js1, participant.Config{Name: "doomed", AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		p1.Register(a, func(ctx context.Context, req *participant.Request) (any, error) {
			fx.do(req.IdempotencyKey)
			if req.Node == "b" {
				close(stuck)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil, ctx.Err()
			}
			return map[string]string{"done": req.Node}, nil
		}, func(ctx context.Context, req *participant.Request) (any, error) {
			fx.undo(req.IdempotencyKey)
			return nil, nil
		})
	}
	if err := p1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id, err := e.cl.Start(ctxT(t), chain4(), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-stuck
	nc1.Close() // killed: no reply, no ack, no lock renewal
	startSDK(t, e.js, participant.Config{Name: "survivor", AckWait: time.Second}, fx, actions, nil)
	s := e.wait(id)
	close(release)
	_ = p1.Stop(context.Background())
	live, doubles := fx.forSaga(id)
	if s.Status != client.StatusSucceeded || len(live) != 4 || len(doubles) != 0 {
		t.Fatalf("status %s, effects %v, doubles %v", s.Status, live, doubles)
	}
}
