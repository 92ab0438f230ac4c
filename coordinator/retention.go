package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/internal/machine"
)

// timerExpire is the kind of a finished saga's expiry timer: when it
// fires, the saga's log and summary are removed (Config.Retention).
const timerExpire machine.TimerKind = "expire"

// finished arms a finished saga's expiry at finished+Retention as a
// message schedule and then clears its in-flight marker, in one I/O
// operation: until the schedule is stored the marker stays, so a crash in
// between leaves the saga to recovery, which does both again.
func (p *partition) finished(id string, at time.Time) {
	ix, pub, pid, retention := p.env.index, p.env.pub, p.id, p.c.cfg.Retention
	var schedule func(ctx context.Context) error
	if retention >= 0 {
		m, err := p.scheduleMsg(id, machine.ArmTimer{Timer: machine.Timer{Kind: timerExpire}, At: at.Add(retention)}, p.env.clock.Now())
		if err != nil {
			p.c.logger.Warn("cannot arm the finished saga's expiry; recovery will", "saga_id", id, "error", err)
			return
		}
		schedule = func(ctx context.Context) error { return pub.Publish(ctx, m) }
	}
	p.run(func(ctx context.Context) input {
		if schedule != nil {
			if err := schedule(ctx); err != nil {
				return finishDone{id: id, err: fmt.Errorf("arm expiry: %w", err)}
			}
		}
		return finishDone{id: id, err: ix.ClearInFlight(ctx, pid, id)}
	})
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
