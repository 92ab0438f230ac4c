package sagatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// Waits, conditions, pivots and operators. A check (Run,
// ActionFailureCanUnwind...) waits for a saga to end, so a saga with await
// nodes needs its signals: Signals gives them once for every saga the
// checks start (a signal that comes before its node starts is kept). For
// sagas that need an operator, Start one, drive it with Signal, Reject,
// Retry, Skip and Abort, and look at it with WaitFor, WaitWaiting and
// WaitDone.

// RegisterUndo adds an undo-only handler to the kit's participant (the
// undo of an await node), like participant.Participant.RegisterUndo.
func (k *Kit) RegisterUndo(name string, undo participant.Handler) {
	k.t.Helper()
	if err := k.part.RegisterUndo(name, undo); err != nil {
		k.t.Fatalf("sagatest: register undo %s: %v (register every handler before the first saga)", name, err)
	}
}

// Signals sets the signals the kit sends every saga its checks start, by
// await node: the value is the signal's data (the node's output). Nodes a
// saga does not have are left out.
func (k *Kit) Signals(byNode map[string]any) { k.signals = byNode }

// sendSignals sends the kit's signals to saga id of def.
func (k *Kit) sendSignals(ctx context.Context, id string, def *saga.Definition) error {
	g, err := saga.Compile(def)
	if err != nil {
		return err
	}
	for _, node := range sortedKeys(k.signals) {
		if n, ok := g.Node(node); !ok || n.Kind != saga.KindAwait {
			continue
		}
		err := k.cl.Signal(ctx, id, node, k.signals[node], client.WithSender("sagatest"))
		if err != nil && !errors.Is(err, client.ErrSignalRefused) {
			// Refused: the saga ended (an injected failure) before the
			// node could take it; the check looks at how it ended.
			return fmt.Errorf("saga %s: signal %s: %w", id, node, err)
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Start starts a saga and returns its id without waiting for it (the
// kit's Signals are sent to it too).
func (k *Kit) Start(def *saga.Definition, params any, faults ...events.Fault) string {
	k.t.Helper()
	k.startParticipant()
	ctx, cancel := k.ctx()
	defer cancel()
	id := uuid.NewString()
	opts := []client.StartOption{client.WithSagaID(id)}
	if len(faults) > 0 {
		opts = append(opts, client.WithFaults(faults...))
	}
	if _, err := k.cl.Start(ctx, def, params, opts...); err != nil {
		k.t.Fatalf("sagatest: start saga %s: %v", def.Name, err)
	}
	k.mu.Lock()
	k.sagas = append(k.sagas, id)
	k.mu.Unlock()
	if err := k.sendSignals(ctx, id, def); err != nil {
		k.t.Fatalf("sagatest: %v", err)
	}
	return id
}

func (k *Kit) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), k.opts.timeout)
}

// Signal sends the await node of saga id its signal, with data as the
// node's output; the test fails if the signal is refused.
func (k *Kit) Signal(id, node string, data any) {
	k.t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.cl.Signal(ctx, id, node, data, client.WithSender("sagatest")); err != nil {
		k.t.Fatalf("sagatest: signal %s of saga %s: %v", node, id, err)
	}
}

// Reject rejects the await node of saga id: it fails for good.
func (k *Kit) Reject(id, node, reason string) {
	k.t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.cl.Reject(ctx, id, node, reason, client.WithSender("sagatest")); err != nil {
		k.t.Fatalf("sagatest: reject %s of saga %s: %v", node, id, err)
	}
}

// WaitFor returns the saga's status once done says so; the test fails if
// it does not within the kit's timeout.
func (k *Kit) WaitFor(id string, what string, done func(*client.Saga) bool) *client.Saga {
	k.t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	s, err := k.cl.WaitFor(ctx, id, func(s *client.Saga) bool { return done(s) || s.Finished() })
	if err != nil {
		st, _ := k.cl.Status(context.Background(), id)
		k.t.Fatalf("sagatest: saga %s: %s: %v%s", id, what, err, where(st))
	}
	if !done(s) {
		k.t.Fatalf("sagatest: saga %s ended %s before %s%s", id, s.Status, what, where(s))
	}
	return s
}

// WaitAwaiting waits until the await node of saga id waits for its signal.
func (k *Kit) WaitAwaiting(id, node string) *client.Saga {
	k.t.Helper()
	return k.WaitFor(id, "await node "+node+" waits for its signal", func(s *client.Saga) bool {
		n, _ := s.Node(node)
		return n.State == "started"
	})
}

// WaitWaiting waits until saga id waits for an operator with node failed
// (on_failure: pause, or past a pivot), and returns its status.
func (k *Kit) WaitWaiting(id, node string) *client.Saga {
	k.t.Helper()
	return k.WaitFor(id, "it waits for an operator on "+node, func(s *client.Saga) bool {
		return s.Status == client.StatusWaiting && slices.Contains(s.Held, node)
	})
}

// WaitDone waits until saga id has ended or is stuck.
func (k *Kit) WaitDone(id string) *client.Saga {
	k.t.Helper()
	return k.WaitFor(id, "it ends", func(s *client.Saga) bool { return s.Finished() || s.Status == client.StatusStuck })
}

// Retry runs the failed node of a waiting saga again, as an operator; with
// params not nil, they replace the node's params.
func (k *Kit) Retry(id, node string, params any) {
	k.t.Helper()
	var raw json.RawMessage
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			k.t.Fatalf("sagatest: retry params: %v", err)
		}
		raw = b
	}
	k.operator("retry", id, node, func(ctx context.Context) error { return k.cl.Retry(ctx, id, node, "sagatest", raw) })
}

// Skip treats the failed node of a waiting saga as succeeded with output.
func (k *Kit) Skip(id, node string, output any) {
	k.t.Helper()
	k.operator("skip", id, node, func(ctx context.Context) error { return k.cl.Skip(ctx, id, node, output, "sagatest") })
}

// Abort makes a running or waiting saga unwind.
func (k *Kit) Abort(id string) {
	k.t.Helper()
	k.operator("abort", id, "", func(ctx context.Context) error { return k.cl.Abort(ctx, id, "sagatest") })
}

// operator sends an operator's command and returns once it is in the
// saga's log, so what the test looks at next is after it.
func (k *Kit) operator(what, id, node string, send func(context.Context) error) {
	k.t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	s, err := k.cl.Status(ctx, id)
	if err != nil {
		k.t.Fatalf("sagatest: %s of saga %s: %v", what, id, err)
	}
	before := len(s.Timeline)
	if err := send(ctx); err != nil {
		k.t.Fatalf("sagatest: %s %s of saga %s: %v", what, node, id, err)
	}
	k.WaitFor(id, "the "+what+" is in its log", func(s *client.Saga) bool {
		for _, e := range s.Timeline[min(before, len(s.Timeline)):] {
			if e.Type == "operator."+what && e.Node == node {
				return true
			}
		}
		return false
	})
}
