package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// ErrSignalRefused: the signal cannot apply (unknown node, not an await
// node, a finished saga, a node that took another signal...). The error
// says why.
var ErrSignalRefused = errors.New("client: signal refused")

// SignalOption sets an option of Signal and Reject.
type SignalOption func(*signalOptions)

type signalOptions struct{ id, sender string }

// WithSignalID gives the signal an id. A signal sent again with the same
// id is a duplicate, taken once (so a retry is safe); without it each
// call makes a new id.
func WithSignalID(id string) SignalOption { return func(o *signalOptions) { o.id = id } }

// WithSender names who sent the signal, recorded in the saga's log
// (default: the client's operator name, if any).
func WithSender(name string) SignalOption { return func(o *signalOptions) { o.sender = name } }

// Signal gives the await node of saga id its signal: data, marshalled to
// JSON, becomes the node's output. A signal that comes before the node
// starts is kept until it does. It returns once the signal is in the
// saga's log (or, when no coordinator answers in time, once it is stored
// for one), or an error wrapping ErrSignalRefused or ErrNotFound that says
// why it cannot apply.
func (c *Client) Signal(ctx context.Context, id, node string, data any, opts ...SignalOption) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("client: signal data: %w", err)
	}
	return c.signal(ctx, id, events.Signal{Node: node, Data: b}, opts)
}

// Reject signals the await node of saga id that it is rejected: the node
// fails for good with reason, and the saga unwinds (or waits for an
// operator, if the node's failure policy says so).
func (c *Client) Reject(ctx context.Context, id, node, reason string, opts ...SignalOption) error {
	if reason == "" {
		return fmt.Errorf("%w: a rejection needs a reason", ErrSignalRefused)
	}
	return c.signal(ctx, id, events.Signal{Node: node, Reject: reason}, opts)
}

// directSignalWait bounds how long a signal waits for the partition's
// owner before it is sent as a command (as directStartWait).
const directSignalWait = 5 * time.Second

func (c *Client) signal(ctx context.Context, id string, sig events.Signal, opts []SignalOption) error {
	o := signalOptions{sender: c.operator}
	for _, opt := range opts {
		opt(&o)
	}
	if o.id == "" {
		o.id = uuid.NewString()
	}
	sig.Sender = o.sender
	// What can be checked without a coordinator is checked here, so that a
	// wrong id or node says so at once.
	s, err := c.Status(ctx, id)
	if err != nil {
		return err
	}
	if n, ok := s.Node(sig.Node); ok && n.Signal != nil && n.Signal.ID == o.id {
		return nil // this very signal was taken (a retry), whatever happened since
	}
	if err := checkSignal(s, sig.Node); err != nil {
		return err
	}
	b, err := c.encodeCommand(id, o.id, "", &sig)
	if err != nil {
		return err
	}
	p := streams.Partition(id, c.partitions)
	m := nats.NewMsg(c.ns.SignalSubject(p))
	m.Data = b
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	rctx, cancel := context.WithTimeout(ctx, directSignalWait)
	reply, err := c.js.Conn().RequestMsgWithContext(rctx, m)
	cancel()
	if err == nil {
		var a streams.StartAnswer
		if json.Unmarshal(reply.Data, &a) == nil {
			switch {
			case a.OK:
				return nil
			case a.Error != "":
				return fmt.Errorf("%w: %s", ErrSignalRefused, a.Error)
			}
		}
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	// No coordinator answered: the signal waits in JETSAGA_WORK for one,
	// deduplicated by its id.
	cmd := nats.NewMsg(c.ns.CommandSubject(p))
	cmd.Data = b
	cmd.Header.Set(jetstream.MsgIDHeader, "signal:"+id+":"+sig.Node+":"+o.id)
	cmd.Header.Set("Content-Type", events.ContentTypeEvent)
	if _, err := c.js.PublishMsg(ctx, cmd); err != nil {
		return fmt.Errorf("client: send signal for saga %s node %q: %w", id, sig.Node, err)
	}
	return nil
}

// checkSignal says why a signal for node cannot apply to saga s, if it
// cannot.
func checkSignal(s *Saga, node string) error {
	var awaits []string
	for _, n := range s.Nodes {
		if n.Kind == string(saga.KindAwait) {
			awaits = append(awaits, n.Path)
		}
	}
	list := "it has none"
	if len(awaits) > 0 {
		list = "its await nodes: " + strings.Join(awaits, ", ")
	}
	n, ok := s.Node(node)
	switch {
	case !ok:
		return fmt.Errorf("%w: saga %s has no node %q (%s)", ErrSignalRefused, s.ID, node, list)
	case n.Kind != string(saga.KindAwait):
		return fmt.Errorf("%w: node %q of saga %s is a %s node; signals are for await nodes (%s)", ErrSignalRefused, node, s.ID, n.Kind, list)
	case s.Finished():
		return fmt.Errorf("%w: saga %s has finished (%s); no node takes a signal", ErrSignalRefused, s.ID, s.Status)
	}
	return nil
}
