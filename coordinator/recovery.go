package coordinator

import (
	"context"
	"fmt"

	"github.com/jetsaga/jetsaga/internal/index"
)

// recoveryLoads bounds the logs a recovery pass reads at once: enough to
// recover a partition of thousands of sagas in seconds, few enough to
// leave room for the sagas' own work.
const recoveryLoads = 32

// recoveryPass is a pass over a partition's sagas marked in flight: each is
// recovered (read and resumed), skipped (already driven here, or not
// started yet), found finished, or fails to load (tried again next pass).
type recoveryPass struct {
	RecoveryPass
	listing bool            // the list of sagas in flight is being read
	queue   []index.Summary // listed, not yet read
	active  map[string]bool // being read for this pass
}

// recover starts a recovery pass, unless one is under way. Its loads run
// in parallel (at most recoveryLoads), each like any other saga's read.
func (p *partition) recover() {
	if p.stopping || p.pass != nil {
		return
	}
	p.pass = &recoveryPass{RecoveryPass: RecoveryPass{Partition: p.id, At: p.env.clock.Now()}, listing: true, active: map[string]bool{}}
	ix, pid := p.env.index, p.id
	p.run(func(ctx context.Context) input {
		sums, err := ix.InFlight(ctx, pid)
		return listDone{sums: sums, err: err}
	})
}

// listed queues the sagas a pass found marked in flight.
func (p *partition) listed(in listDone) {
	c := p.c
	if p.pass == nil {
		return
	}
	p.pass.listing = false
	if in.err != nil {
		c.stats.recoveryFailures.Add(1)
		p.pass.Failed++
		c.stats.failure(fmt.Sprintf("partition %d: list in-flight sagas: %v", p.id, in.err))
		c.logger.Error("recovery: cannot list in-flight sagas", "partition", p.id, "error", in.err)
		c.stats.pass(p.pass.RecoveryPass)
		p.pass = nil
		return
	}
	p.pass.Listed = len(in.sums)
	p.pass.queue = in.sums
	p.pumpRecovery()
}

// pumpRecovery starts the pass's next loads, and ends the pass when all
// are done.
func (p *partition) pumpRecovery() {
	pass := p.pass
	if pass == nil || pass.listing {
		return
	}
	if p.stopping {
		p.pass = nil
		return
	}
	for len(pass.active) < recoveryLoads && len(pass.queue) > 0 {
		listed := &pass.queue[0]
		id := listed.ID
		pass.queue = pass.queue[1:]
		_, loaded := p.sagas[id]
		_, loading := p.loading[id]
		if loaded || loading {
			p.c.stats.skipped.Add(1)
			pass.Skipped++
			continue
		}
		pass.active[id] = true
		p.step(task{in: recoverInput{id: id, listed: listed}})
	}
	if len(pass.active) == 0 && len(pass.queue) == 0 {
		p.c.stats.pass(pass.RecoveryPass)
		p.pass = nil
	}
}

// loaded reports whether the log of id was read for the pass, and counts
// it done.
func (pass *recoveryPass) loaded(id string) bool {
	if pass == nil || !pass.active[id] {
		return false
	}
	delete(pass.active, id)
	return true
}
