package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// timerExpire is the kind of the expiry timer releases before the archive
// armed when a saga finished: when one fires, the saga's log, summary and
// marker are removed. None is armed any more (finished sagas leave the
// log by themselves, archived); those armed before still fire.
const timerExpire machine.TimerKind = "expire"

// finished archives a finished saga (its rollup and summary) and then
// clears its in-flight marker, in one I/O operation: until the archive has
// it the marker stays, so a crash in between leaves the saga to recovery,
// which does both again. The saga's last message, the same rollup, stays
// on its log subject for the dedupe window and then expires by itself:
// archiving must succeed before then, so a failure is tried again at once
// and then with backoff, as long as the partition is this coordinator's.
func (p *partition) finished(r *run) {
	id := r.state.SagaID
	rollup, err := r.rollup()
	if err == nil && p.c.tooBig(rollup) {
		// Left on its log (decide): only its marker goes.
		ix, pid := p.env.index, p.id
		p.run(func(ctx context.Context) input { return finishDone{id: id, err: ix.ClearInFlight(ctx, pid, id)} })
		return
	}
	var sum []byte
	if err == nil {
		sum, err = json.Marshal(summaryOf(p.id, r.state))
	}
	if err != nil {
		p.c.logger.Error("cannot archive the finished saga", "saga_id", id, "error", err)
		return
	}
	// Tried even while the partition is being handed off: the next
	// owner's first recovery pass may have run already.
	p.archive(&archiving{id: id, rollup: rollup, summary: sum})
}

// archiving is a finished saga's archiving and marker removal.
type archiving struct {
	id              string
	rollup, summary []byte
	attempt         int
}

// maxArchiveWait bounds the wait between tries of an archiving.
const maxArchiveWait = 10 * time.Second

func (p *partition) archive(a *archiving) {
	if p.stopping && a.attempt > 0 {
		return // the partition's next owner recovers the saga
	}
	log, ix, pid := p.env.log, p.env.index, p.id
	p.run(func(ctx context.Context) input {
		if err := log.Archive(ctx, a.id, a.rollup, a.summary); err != nil {
			return finishDone{id: a.id, a: a, err: fmt.Errorf("archive: %w", err)}
		}
		return finishDone{id: a.id, a: a, err: ix.ClearInFlight(ctx, pid, a.id)}
	})
}

// archived takes an archiving's outcome: a failure is tried again.
func (p *partition) archived(in finishDone) {
	if in.err == nil {
		return
	}
	if in.a == nil || p.stopping {
		p.c.logger.Warn("cannot archive the finished saga or clear its in-flight marker; recovery will", "saga_id", in.id, "error", in.err)
		return
	}
	wait := min(100*time.Millisecond<<min(in.a.attempt, 10), maxArchiveWait)
	in.a.attempt++
	p.c.logger.Warn("cannot archive the finished saga or clear its in-flight marker; trying again", "saga_id", in.id, "error", in.err, "in", wait)
	p.after(wait, archiveAgainInput{a: in.a})
}

// unmarkArchived clears the in-flight marker of a saga that has no log
// if the archive has that very saga: its summary there was created when
// the marker's was (an id reused after the dedupe window names another
// saga, whose marker may be written just before its first append lands).
func (p *partition) unmarkArchived(marker index.Summary) {
	log, ix, pid, id := p.env.log, p.env.index, p.id, marker.ID
	p.run(func(ctx context.Context) input {
		e, err := log.Archived(ctx, id)
		switch {
		case errors.Is(err, streams.ErrNotFound):
			return finishDone{id: id} // not finished: a start on its way
		case err != nil:
			return finishDone{id: id, err: fmt.Errorf("look in the archive: %w", err)}
		}
		var archived index.Summary
		if json.Unmarshal(e.Summary, &archived) != nil || marker.Created.IsZero() || !archived.Created.Equal(marker.Created) {
			return finishDone{id: id} // another saga of the same id, or nothing to tell them apart
		}
		return finishDone{id: id, err: ix.ClearInFlight(ctx, pid, id)}
	})
}

// rollupMargin is room left in a message beside a rollup: the archive
// message's headers (the summary) and the server's own.
const rollupMargin = 64 << 10

// tooBig reports whether rollup cannot be one message (the stream's and
// the server's limits, less rollupMargin). A coordinator without a
// connection (the simulation) has no limit.
func (c *Coordinator) tooBig(rollup []byte) bool {
	if c.nc == nil {
		return false
	}
	limit := int64(c.nc.MaxPayload())
	if m := int64(c.cfg.Topology.MaxMsgSize); m > 0 && m < limit {
		limit = m
	} else if m == 0 && streams.DefaultMaxMsgSize < limit {
		limit = streams.DefaultMaxMsgSize
	}
	return int64(len(rollup)) > limit-rollupMargin
}

// rollup is the saga's log as one rollup: the message its last decision
// appended, or, for a log finished by an earlier release, its messages
// restated.
func (r *run) rollup() ([]byte, error) {
	if len(r.raw) == 1 && events.IsRollup(r.raw[0]) {
		return r.raw[0], nil
	}
	return events.EncodeRollup(r.raw)
}

// expire removes a finished saga's log (if it has one: logged), its
// summary and its in-flight marker, when its expiry timer fires. The
// marker is normally gone already; one whose removal failed until now
// would otherwise outlive the log and be listed by every recovery pass.
func (p *partition) expire(t task, logged bool) {
	log, ix, id, pid := p.env.log, p.env.index, t.in.saga(), p.id
	p.run(func(ctx context.Context) input {
		if logged {
			if err := log.Delete(ctx, id); err != nil {
				return expireDone{t: t, err: fmt.Errorf("cannot delete the saga's log: %w", err)}
			}
		}
		if err := ix.Forget(ctx, id); err != nil {
			return expireDone{t: t, err: fmt.Errorf("cannot remove the saga's summary: %w", err)}
		}
		if err := ix.ClearInFlight(ctx, pid, id); err != nil {
			return expireDone{t: t, err: fmt.Errorf("cannot clear the saga's in-flight marker: %w", err)}
		}
		return expireDone{t: t}
	})
}

func (p *partition) expired(in expireDone) {
	if in.err != nil {
		p.logger(in.t).Error("cannot expire the saga; will retry", "error", in.err)
		p.retryLater(in.t)
		return
	}
	p.c.stats.expired.Add(1)
	p.logger(in.t).Debug("saga expired: log and summary removed")
	p.ack(in.t)
}
