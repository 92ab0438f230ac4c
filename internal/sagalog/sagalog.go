// Package sagalog is the one place that reads a saga's log as decisions:
// it decodes log messages, folds them into the saga's state, and follows a
// log as it grows. The coordinator, the client and the CLI all go through
// it.
package sagalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// Message is one message of a saga's log: the events of one decision.
type Message struct {
	// Seq is the sequence of the stored message holding it (in
	// JETSAGA_LOG, or JETSAGA_ARCHIVE): a rollup holds every message of a
	// finished saga, under one sequence.
	Seq uint64
	// N is its place in the saga's log: 1 for the first decision. Set by
	// Messages, DecodeAll and Follow.
	N int
	// Stored is when the server stored it.
	Stored time.Time
	Events []events.Event
}

// Decode decodes one message of the log of saga id. Events of a compact
// message after the saga's first carry no trace context (see
// events.DecodeLog): Apply and DecodeAll give them the saga's.
func Decode(id string, e streams.Entry) (Message, error) {
	evs, err := events.DecodeLog(id, e.Data)
	if err != nil {
		return Message{}, fmt.Errorf("saga %s log message %d: %w", id, e.Seq, err)
	}
	return Message{Seq: e.Seq, Stored: e.Time, Events: evs}, nil
}

// Messages decodes a stored entry into the messages it holds, the first
// being the saga's message number n: the entry itself, or each message of
// a rollup (events.EncodeRollup), all with the entry's sequence.
func Messages(id string, e streams.Entry, n int) ([]Message, error) {
	parts, ok, err := events.SplitRollup(e.Data)
	if err != nil {
		return nil, fmt.Errorf("saga %s log message %d: %w", id, e.Seq, err)
	}
	if !ok {
		m, err := Decode(id, e)
		m.N = n
		return []Message{m}, err
	}
	out := make([]Message, 0, len(parts))
	for i, p := range parts {
		m, err := Decode(id, streams.Entry{Seq: e.Seq, Time: e.Time, Data: p})
		if err != nil {
			return out, fmt.Errorf("%w (message %d of a rollup)", err, i+1)
		}
		m.N = n + i
		out = append(out, m)
	}
	return out, nil
}

// FromLastRollup returns entries from the last rollup among them on: a
// read that spans pages can return messages and then the rollup that
// restates them (the saga's last decision landed between two pages).
func FromLastRollup(entries []streams.Entry) []streams.Entry {
	for i := len(entries) - 1; i > 0; i-- {
		if events.IsRollup(entries[i].Data) {
			return entries[i:]
		}
	}
	return entries
}

// Resolver fills a saga.created's definition and defaults from the
// documents its references name: *defs.Store.
type Resolver interface {
	Resolve(ctx context.Context, c *events.SagaCreated) error
}

// DecodeAll decodes the messages of the log of saga id, from its first,
// and reads the definition and defaults its saga.created refers to
// through r.
func DecodeAll(ctx context.Context, r Resolver, id string, entries []streams.Entry) ([]Message, error) {
	entries = FromLastRollup(entries)
	out := make([]Message, 0, len(entries))
	var trace string
	for _, e := range entries {
		ms, err := Messages(id, e, len(out)+1)
		if err != nil {
			return out, err
		}
		for _, m := range ms {
			if err := resolve(ctx, r, id, m); err != nil {
				return out, err
			}
			if c, ok := m.Events[0].Data.(*events.SagaCreated); ok && c != nil {
				trace = m.Events[0].TraceParent
			}
			inherit(m, trace)
			out = append(out, m)
		}
	}
	return out, nil
}

// resolve reads what the saga.created in m refers to, if m holds one.
func resolve(ctx context.Context, r Resolver, id string, m Message) error {
	c, ok := m.Events[0].Data.(*events.SagaCreated)
	if !ok || !c.Unresolved() {
		return nil
	}
	if r == nil {
		return fmt.Errorf("saga %s log message %d: saga.created refers to definition %s, and nothing here reads definitions", id, m.Seq, c.DefinitionRef)
	}
	if err := r.Resolve(ctx, c); err != nil {
		return fmt.Errorf("saga %s log message %d: %w", id, m.Seq, err)
	}
	return nil
}

// inherit gives the events of m without a trace context the saga's.
func inherit(m Message, trace string) {
	for i := range m.Events {
		if m.Events[i].TraceParent == "" {
			m.Events[i].TraceParent = trace
		}
	}
}

// Apply applies the events of m, a message of s's saga, to s: all of
// them or none. A saga.created must have been resolved (DecodeAll).
func Apply(s *machine.State, m Message) error {
	if err := s.ApplyAll(m.Events); err != nil {
		return fmt.Errorf("saga %s log message %d: %w", s.SagaID, m.Seq, err)
	}
	inherit(m, s.TraceParent)
	return nil
}

// Follow folds the log of saga id from its start and then as it grows,
// reading what its saga.created refers to through r:
// each is called with every message in order once it is applied, and
// done with the state after every read; Follow returns when done says so,
// or on ctx's end or the first error. A saga with no log yet is waited
// for, for grace (then the error wraps streams.ErrNotFound), or until ctx
// ends if grace is 0. It learns of appends from the log's subject, and
// reads every second in case a notice is lost.
func Follow(ctx context.Context, nc *nats.Conn, log *streams.Log, r Resolver, id string, grace time.Duration,
	each func(Message) error, done func(*machine.State) bool) (*machine.State, error) {
	// Subscribe before reading, so no append falls between the two.
	nudge := make(chan struct{}, 1)
	sub, err := nc.Subscribe(log.Namespace().LogSubject(id), func(*nats.Msg) {
		select {
		case nudge <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe() //nolint:errcheck // nothing to do about it
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	appear := time.Now().Add(grace)
	st := machine.New(id)
	var last uint64
	applied := 0 // messages
	for {
		entries, err := log.Read(ctx, id, last)
		archived := false
		if errors.Is(err, streams.ErrNotFound) && last == 0 {
			// Finished and gone from its subject: the archive has it.
			var e *streams.Entry
			if e, err = log.Archived(ctx, id); err == nil {
				entries, archived = []streams.Entry{*e}, true
			}
		}
		switch {
		case errors.Is(err, streams.ErrNotFound) && last == 0:
			if grace > 0 && time.Now().After(appear) {
				return nil, err
			}
		case err != nil:
			return nil, err
		}
		for _, e := range entries {
			ms, err := Messages(id, e, applied+1)
			if err != nil {
				return nil, err
			}
			if events.IsRollup(e.Data) {
				// A rollup restates the log from its beginning: the
				// messages read before it are not news.
				if applied > len(ms) {
					return nil, fmt.Errorf("saga %s log message %d: a rollup of %d messages, and %d were read before it", id, e.Seq, len(ms), applied)
				}
				ms = ms[applied:]
				for i := range ms {
					ms[i].N = applied + i + 1
				}
			}
			for _, m := range ms {
				err := resolve(ctx, r, id, m)
				if err == nil {
					err = Apply(st, m)
				}
				if err != nil {
					return nil, err
				}
				applied++
				if each != nil {
					if err := each(m); err != nil {
						return nil, err
					}
				}
			}
			last = e.Seq
		}
		if last > 0 && done(st) {
			return st, nil
		}
		if archived {
			// Its sequence is the archive's, not the log's, and nothing
			// will be appended to a finished saga.
			return st, fmt.Errorf("saga %s: finished (read from the archive), and it will not change", id)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-nudge:
		case <-poll.C:
		}
	}
}
