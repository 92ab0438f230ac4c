package coordinator

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pending is an asynchronous write whose acknowledgement is awaited off
// the partitions' goroutines, so that a partition goes on to its next
// input after one round trip (its append) instead of one per write.
type pending struct {
	f jetstream.PubAckFuture
	// ok runs once the write is acknowledged; it may return a follow-up
	// write to await (nil for none).
	ok func() *pending
	// failed runs if the write failed or was not acknowledged in time.
	failed func(error)
}

// ackQueue is how many writes may await acknowledgement before the
// partitions wait for the acker.
const ackQueue = 8192

// await hands a write to the acker.
func (c *Coordinator) await(pd pending) { c.acks <- pd }

// ackLoop awaits acknowledgements in order until acks is closed and
// everything handed to it has been awaited. Writes are acknowledged about
// in the order they were made, so awaiting them one after another costs
// no more than the slowest.
func (c *Coordinator) ackLoop(acks <-chan pending) {
	var queue []pending
	timeout := time.NewTimer(c.cfg.RequestTimeout)
	defer timeout.Stop()
	for {
		if len(queue) == 0 {
			pd, ok := <-acks
			if !ok {
				return
			}
			queue = append(queue, pd)
		}
		pd := queue[0]
		queue[0] = pending{}
		queue = queue[1:]
		timeout.Reset(c.cfg.RequestTimeout)
		select {
		case <-pd.f.Ok():
			if pd.ok != nil {
				if next := pd.ok(); next != nil {
					queue = append(queue, *next)
				}
			}
		case err := <-pd.f.Err():
			if pd.failed != nil {
				pd.failed(err)
			}
		case <-timeout.C:
			if pd.failed != nil {
				pd.failed(errors.New("no acknowledgement in time"))
			}
		}
	}
}
