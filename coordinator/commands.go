package coordinator

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
)

// execute carries out a durable decision's commands. Requests and
// schedules are published as I/O operations; if one fails, the saga is
// recovered a little later, which sends every outstanding request and arms
// every timer again. (A crash before they are stored is covered by
// recovery on restart: the decision is in the log.)
func (p *partition) execute(r *run, cmds []machine.Command) {
	c := p.c
	id := r.state.SagaID
	now := p.env.clock.Now().UTC()
	for _, cmd := range cmds {
		switch cmd := cmd.(type) {
		case machine.SendRequest:
			cmd.TraceParent = c.tracer.request(r, cmd, now)
			if cmd.NotBefore.After(now) {
				p.sendLater(r, cmd, now)
				continue
			}
			if c.metrics != nil {
				if r.sent == nil {
					r.sent = map[string]time.Time{}
				}
				r.sent[cmd.ID] = now
			}
			p.sendRequest(id, cmd, now)
		case machine.ArmTimer:
			if cmd.Timer.Kind == machine.TimerTimeout || cmd.At.Sub(now) < scheduleAtLeast {
				p.armInMemory(r, cmd, now)
				continue
			}
			p.schedule(id, cmd, now)
		}
	}
}

// sendRequest publishes an action or undo request.
func (p *partition) sendRequest(sagaID string, cmd machine.SendRequest, now time.Time) {
	req := cmd.Request
	req.ReplyTo = p.c.ns.ReplySubject(p.id)
	b, err := events.Encode(events.Event{ID: cmd.ID, Source: p.c.source, SagaID: sagaID, Time: now,
		TraceParent: cmd.TraceParent, Data: &req})
	if err != nil {
		p.published(publishDone{id: sagaID, what: "request " + cmd.ID, err: err})
		return
	}
	m := nats.NewMsg(p.c.ns.RequestSubject(cmd.Action))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, cmd.ID)
	m.Header.Set("Content-Type", events.ContentTypeEvent)
	p.publish(sagaID, "request "+cmd.ID, m)
}

// publish stores m as an I/O operation.
func (p *partition) publish(sagaID, what string, m *nats.Msg) {
	pub := p.env.pub
	p.run(func(ctx context.Context) input {
		return publishDone{id: sagaID, what: what, err: pub.Publish(ctx, m)}
	})
}

// published: a request or schedule that could not be stored is sent again
// by recovering its saga.
func (p *partition) published(in publishDone) {
	if in.err == nil {
		return
	}
	p.c.logger.Warn("publish failed; recovering the saga", "saga_id", in.id, "what", in.what, "error", in.err)
	p.recoverLater(in.id)
}

// sendLater sends a request held back by an injected delay when its time
// comes. The delay is in the log (node.started's not_before), so recovery
// holds the request back again; a request lost here is sent by recovery.
func (p *partition) sendLater(r *run, cmd machine.SendRequest, now time.Time) {
	key := "send:" + cmd.ID
	if old, ok := r.timers[key]; ok {
		old.Stop()
	} else {
		p.c.timers.Add(1)
	}
	r.timers[key] = p.after(cmd.NotBefore.Sub(now), sendDueInput{id: r.state.SagaID, cmd: cmd})
}

func (p *partition) sendDue(in sendDueInput) {
	if p.stopping {
		return // the next owner's recovery sends it
	}
	p.sendRequest(in.id, in.cmd, p.env.clock.Now().UTC())
}

// scheduleAtLeast is the shortest retry wait armed as a message schedule.
// Schedules fire with about a second's granularity, so shorter waits are
// armed in memory; like attempt deadlines, they are in the log
// (node.attempt_failed's retry_at) and re-armed on recovery.
const scheduleAtLeast = 5 * time.Second

// armInMemory arms a timer in this process. Its time is in the log, so a
// restarted coordinator re-arms it on recovery.
func (p *partition) armInMemory(r *run, cmd machine.ArmTimer, now time.Time) {
	t := cmd.Timer
	if old, ok := r.timers[t.ID()]; ok {
		old.Stop()
	} else {
		p.c.timers.Add(1)
	}
	r.timers[t.ID()] = p.after(cmd.At.Sub(now), timerInput{id: r.state.SagaID, timer: t})
}

// schedule arms a retry as a message schedule in JETSAGA_TIMERS.
func (p *partition) schedule(sagaID string, cmd machine.ArmTimer, now time.Time) {
	m, err := p.scheduleMsg(sagaID, cmd, now)
	if err != nil {
		p.published(publishDone{id: sagaID, what: "timer " + cmd.Timer.ID(), err: err})
		return
	}
	p.publish(sagaID, "timer "+cmd.Timer.ID(), m)
}

// scheduleMsg is the message schedule of a timer. Its subject is fixed for
// the saga and timer, so arming it again (on recovery) replaces it.
func (p *partition) scheduleMsg(sagaID string, cmd machine.ArmTimer, now time.Time) (*nats.Msg, error) {
	h := fnv.New64a()
	h.Write([]byte(sagaID))
	h.Write([]byte{0})
	h.Write([]byte(cmd.Timer.ID()))
	b, err := json.Marshal(timerMsg{SagaID: sagaID, Timer: cmd.Timer})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(p.c.ns.TimerScheduleSubject(p.id, strconv.FormatUint(h.Sum64(), 16)))
	m.Data = b
	at := cmd.At
	if min := now.Add(time.Second); at.Before(min) {
		at = min // a schedule in the past may be refused
	}
	m.Header.Set(jetstream.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(jetstream.ScheduleTargetHeader, p.c.ns.TimerFireSubject(p.id))
	m.Header.Set(jetstream.ScheduleTTLHeader, "1h") // fired timers expire
	return m, nil
}

// index writes the summary of a saga in flight into its marker. The index
// is derived from the log: a failure is logged, and recovery writes it
// again. A finished saga's summary goes to the archive (finished).
func (p *partition) index(r *run) {
	s := r.state
	if s.Created == nil || s.Status.Finished() {
		return
	}
	sum := summaryOf(p.id, s)
	r.indexed = s.Updated
	ix := p.env.index
	p.run(func(ctx context.Context) input { return indexDone{sum: sum, err: ix.MarkInFlight(ctx, sum)} })
}

// markerRefresh is how far behind a saga's progress its summary's
// Updated (what jetsaga list shows) may fall.
const markerRefresh = 30 * time.Second

func (c *Coordinator) markerRefresh() time.Duration {
	if c.cfg.markerRefresh > 0 {
		return c.cfg.markerRefresh
	}
	return markerRefresh
}

// sameSummary reports whether two summaries say the same (as stored:
// compared as JSON, so a time read back compares equal to the one
// written).
func sameSummary(a, b index.Summary) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// summaryOf is saga s's summary, for the index and the archive.
func summaryOf(partition int, s *machine.State) index.Summary {
	sum := index.Summary{ID: s.SagaID, Status: string(s.Status), Paused: s.Paused, Partition: partition, Updated: s.Updated}
	if s.Created != nil {
		sum.Name, sum.IdempotencyKey, sum.Metadata, sum.Created = s.Created.Definition.Name, s.Created.IdempotencyKey, s.Created.Metadata, s.CreatedAt
	}
	if s.Created != nil {
		sum.Definition = s.Created.DefinitionRef
	}
	if s.Unwinding != nil {
		sum.Node = s.Unwinding.Node
	}
	switch s.Status {
	case machine.StatusStuck:
		if undos := s.FailedUndos(); len(undos) > 0 {
			sum.Node = undos[0].Node
		}
	case machine.StatusWaiting:
		if held := s.Held(); len(held) > 0 {
			sum.Node = held[0]
		}
	}
	return sum
}
