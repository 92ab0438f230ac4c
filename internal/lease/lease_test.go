package lease

import (
	"fmt"
	"testing"
)

// The assignment is fair (no member above ceil(P/M)), and when a member
// leaves most partitions stay where they were.
func TestAssignIsFairAndStable(t *testing.T) {
	for _, c := range []struct{ members, partitions int }{{2, 4}, {3, 64}, {3, 16}, {10, 64}, {5, 3}} {
		var members []string
		for i := range c.members {
			members = append(members, fmt.Sprintf("c%d", i+1))
		}
		a := assign(members, c.partitions)
		count := map[string]int{}
		for p := range c.partitions {
			count[a[p]]++
		}
		limit := (c.partitions + c.members - 1) / c.members
		for _, m := range members {
			if count[m] > limit || (c.partitions >= c.members && count[m] == 0) {
				t.Errorf("%d members, %d partitions: %s gets %d (%v)", c.members, c.partitions, m, count[m], count)
			}
		}
		if c.members < 2 {
			continue
		}
		// One member leaves: partitions of the others mostly stay.
		b := assign(members[1:], c.partitions)
		moved := 0
		for p := range c.partitions {
			if a[p] != members[0] && b[p] != a[p] {
				moved++
			}
		}
		if moved > c.partitions/3 {
			t.Errorf("%d members, %d partitions: %d partitions of staying members moved", c.members, c.partitions, moved)
		}
	}
}
