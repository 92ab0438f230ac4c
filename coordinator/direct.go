package coordinator

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/streams"
)

// Direct starts. A client first asks the partition's owner over core NATS
// (streams.StartSubject) and only if none answers sends the start as a
// command stored in JETSAGA_WORK. The direct path writes nothing but the
// saga's first append: the start command was one JetStream write per saga
// that the log's first message already makes durable. A direct start is
// an input like a command, delivered by a subscription the partition
// holds while it holds its lease, and settled the same way: settling it
// answers the client.

// directStart is a start asked for directly: a delivery whose settling
// answers the client (streams.StartAnswer). Nothing redelivers it: a Nak
// answers "retry", and the client falls back to the command.
type directStart struct{ m *nats.Msg }

func (d directStart) Subject() string { return d.m.Subject }
func (d directStart) Data() []byte    { return d.m.Data }
func (d directStart) Ack() error      { return d.answer(streams.StartAnswer{OK: true}) }
func (d directStart) Nak() error {
	return d.answer(streams.StartAnswer{Retry: "the coordinator could not decide the start now"})
}
func (d directStart) NakWithDelay(time.Duration) error { return d.Nak() }
func (d directStart) Term() error {
	return d.answer(streams.StartAnswer{Error: "the coordinator refused the start (its log says why)"})
}

// created answers that this start created the saga.
func (d directStart) created() error { return d.answer(streams.StartAnswer{OK: true, Created: true}) }

// refuse answers with the reason the start was rejected.
func (d directStart) refuse(reason string) error {
	return d.answer(streams.StartAnswer{Error: reason})
}

func (d directStart) answer(a streams.StartAnswer) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return d.m.Respond(b)
}

// refuser is a delivery that can say why it is refused.
type refuser interface{ refuse(reason string) error }

// creator is a delivery that can say its start created the saga (settling
// it like an ack).
type creator interface{ created() error }

// serveDirectStarts subscribes p to its partition's direct starts.
func (c *Coordinator) serveDirectStarts(p *partition) (*nats.Subscription, error) {
	return c.serveDirect(p, c.ns.StartSubject(p.id), streams.StartQueue, "saga starts", func(in sagaBound) bool {
		_, ok := in.(startInput)
		return ok
	})
}

// serveDirectSignals subscribes p to its partition's direct signals:
// answered like direct starts, once the signal is in the saga's log or
// with why it was refused.
func (c *Coordinator) serveDirectSignals(p *partition) (*nats.Subscription, error) {
	return c.serveDirect(p, c.ns.SignalSubject(p.id), streams.SignalQueue, "signals", func(in sagaBound) bool {
		_, ok := in.(signalInput)
		return ok
	})
}

func (c *Coordinator) serveDirect(p *partition, subject, queue, what string, takes func(sagaBound) bool) (*nats.Subscription, error) {
	return c.nc.QueueSubscribe(subject, queue, func(m *nats.Msg) {
		d := directStart{m: m}
		in, rej := workInput(d, c.ns, p.id, c.cfg.Topology.Partitions)
		if rej == nil && !takes(in) {
			rej = &rejection{kind: rejectMisrouted, sagaID: in.saga(), reason: "only " + what + " are taken on " + m.Subject}
		}
		if rej != nil {
			p.reject(d, rej)
			return
		}
		p.enqueue(in)
	})
}
