package stall_test

import (
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/stall"
)

func TestLongest(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(id string, s float64) stall.Event {
		return stall.Event{SagaID: id, Time: t0.Add(time.Duration(s * float64(time.Second)))}
	}
	for _, c := range []struct {
		name string
		evs  []stall.Event
		want time.Duration
		from float64
	}{
		{"none", nil, 0, 0},
		{"one saga", []stall.Event{at("a", 0), at("a", 1), at("a", 4), at("a", 5)}, 3 * time.Second, 1},
		// a finished at 1, b started at 10: nothing was in flight between.
		{"idle between sagas", []stall.Event{at("a", 0), at("a", 1), at("b", 10), at("b", 12)}, 2 * time.Second, 10},
		// b in flight from 0 to 20 while a's events come and go.
		{"one saga waiting while others run", []stall.Event{at("b", 0), at("a", 1), at("a", 2), at("a", 3), at("b", 20)}, 17 * time.Second, 3},
		{"out of order", []stall.Event{at("a", 5), at("a", 0), at("a", 1)}, 4 * time.Second, 1},
	} {
		got, from := stall.Longest(c.evs)
		if got != c.want || (c.want > 0 && !from.Equal(t0.Add(time.Duration(c.from*float64(time.Second))))) {
			t.Errorf("%s: %s from %s, want %s from %gs", c.name, got, from.Sub(t0), c.want, c.from)
		}
	}
}
