// Package stall measures availability after the fact: from the times of
// the events appended to saga logs, the longest interval in which sagas
// were in flight and none of them advanced. The chaos suite and the
// cluster example report it.
package stall

import (
	"slices"
	"time"
)

// Event is one event appended to a saga's log, at Time (the writer's
// clock).
type Event struct {
	SagaID string
	Time   time.Time
}

// Longest returns the longest interval between two consecutive events (of
// any saga) during which some saga was in flight — between its first and
// its last event — and when it began. Gaps in which no saga was in flight
// (nothing to do) do not count.
func Longest(evs []Event) (time.Duration, time.Time) {
	type span struct{ first, last time.Time }
	sagas := map[string]*span{}
	times := make([]time.Time, 0, len(evs))
	for _, e := range evs {
		times = append(times, e.Time)
		sp := sagas[e.SagaID]
		switch {
		case sp == nil:
			sagas[e.SagaID] = &span{e.Time, e.Time}
		case e.Time.Before(sp.first):
			sp.first = e.Time
		case e.Time.After(sp.last):
			sp.last = e.Time
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	var longest time.Duration
	var at time.Time
	for i := 1; i < len(times); i++ {
		a, b := times[i-1], times[i]
		if b.Sub(a) <= longest {
			continue
		}
		for _, sp := range sagas {
			if !sp.first.After(a) && !sp.last.Before(b) {
				longest, at = b.Sub(a), a
				break
			}
		}
	}
	return longest, at
}
