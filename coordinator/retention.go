package coordinator

import (
	"errors"
	"time"

	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/streams"
)

// timerExpire is the kind of a finished saga's expiry timer: when it
// fires, the saga's log and summary are removed (Config.Retention).
const timerExpire machine.TimerKind = "expire"

// expiry arms the removal of a finished saga at finished+Retention as a
// message schedule and waits until it is stored. It returns false if it
// could not be: the saga's in-flight marker must then stay, so that a
// recovery pass arms it again.
func (p *partition) expiry(id string, finished time.Time) bool {
	c := p.c
	if c.cfg.Retention < 0 {
		return true
	}
	f, err := p.schedule(id, machine.ArmTimer{Timer: machine.Timer{Kind: timerExpire}, At: finished.Add(c.cfg.Retention)})
	if err == nil {
		select {
		case <-f.Ok():
			return true
		case err = <-f.Err():
		case <-time.After(c.cfg.RequestTimeout):
			err = errors.New("no acknowledgement in time")
		}
	}
	c.logger.Warn("cannot arm the finished saga's expiry; recovery will", "saga_id", id, "error", err)
	return false
}

// finished arms a saga's expiry and then clears its in-flight marker,
// both without holding up the partition: the acker awaits the schedule,
// then clears the marker. Until the schedule is stored the marker stays,
// so a crash in between leaves the saga to recovery, which arms it again.
func (p *partition) finished(id string, at time.Time) {
	c := p.c
	clear := func() *pending {
		f, err := c.ix.ClearInFlightAsync(p.id, id)
		if err != nil {
			c.logger.Warn("cannot clear in-flight marker; recovery will", "saga_id", id, "error", err)
			return nil
		}
		return &pending{f: f, failed: func(err error) {
			c.logger.Warn("cannot clear in-flight marker; recovery will", "saga_id", id, "error", err)
		}}
	}
	if c.cfg.Retention < 0 {
		if pd := clear(); pd != nil {
			c.await(*pd)
		}
		return
	}
	f, err := p.schedule(id, machine.ArmTimer{Timer: machine.Timer{Kind: timerExpire}, At: at.Add(c.cfg.Retention)})
	if err != nil {
		c.logger.Warn("cannot arm the finished saga's expiry; recovery will", "saga_id", id, "error", err)
		return
	}
	c.await(pending{f: f, ok: clear, failed: func(err error) {
		c.logger.Warn("cannot arm the finished saga's expiry; recovery will", "saga_id", id, "error", err)
	}})
}

// expire removes a finished saga's log and summary, when its expiry timer
// fires. A saga that is not finished is left alone (it cannot be: its
// timer is armed only once it has finished).
func (p *partition) expire(it item) {
	c := p.c
	logger := c.logger.With("saga_id", it.sagaID, "partition", p.id)
	if _, loaded := p.sagas[it.sagaID]; loaded {
		logger.Warn("expiry timer for a saga in flight ignored")
		p.ack(it)
		return
	}
	ctx, cancel := c.opCtx()
	defer cancel()
	r, err := p.load(it.sagaID, false, false)
	switch {
	case errors.Is(err, streams.ErrNotFound):
		// Removed already; make sure the summary is gone too.
	case err != nil:
		logger.Error("cannot read the saga to expire it; will retry", "error", err)
		p.retryLater(it)
		return
	case !r.state.Status.Finished():
		logger.Warn("expiry timer for a saga that has not finished ignored")
		p.ack(it)
		return
	default:
		if err := c.log.Delete(ctx, it.sagaID); err != nil {
			logger.Error("cannot delete the saga's log; will retry", "error", err)
			p.retryLater(it)
			return
		}
	}
	if err := c.ix.Forget(ctx, it.sagaID); err != nil {
		logger.Warn("cannot remove the saga's summary; will retry", "error", err)
		p.retryLater(it)
		return
	}
	c.stats.expired.Add(1)
	logger.Debug("saga expired: log and summary removed")
	p.ack(it)
}
