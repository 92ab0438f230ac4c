package ui

import "testing"

func TestLayeredLayout(t *testing.T) {
	t.Parallel()
	// a → b, a → c, b → d, c → d, a → d (spans two layers: a dummy).
	parents := [][]int{nil, {0}, {0}, {1, 2, 0}}
	l := layered(4, parents)
	if got := []int{l.Nodes[0].Layer, l.Nodes[1].Layer, l.Nodes[2].Layer, l.Nodes[3].Layer}; got[0] != 0 || got[1] != 1 || got[2] != 1 || got[3] != 2 {
		t.Fatalf("layers %v", got)
	}
	if l.Nodes[1].Y == l.Nodes[2].Y || l.Nodes[1].X != l.Nodes[2].X {
		t.Fatalf("b and c overlap or are in different columns: %+v %+v", l.Nodes[1], l.Nodes[2])
	}
	if len(l.Edges) != 5 {
		t.Fatalf("%d edges", len(l.Edges))
	}
	for _, e := range l.Edges {
		if e.From == 0 && e.To == 3 && len(e.Points) != 4 {
			t.Fatalf("the long edge has %d points, want 4 (through a dummy)", len(e.Points))
		}
	}
	// Crossings are removed: two parallel chains whose declaration order
	// crosses them.
	// 0 → 2, 1 → 3, with 2 and 3 declared so that the naive order crosses.
	l = layered(4, [][]int{nil, nil, {1}, {0}})
	if (l.Nodes[0].Y < l.Nodes[1].Y) != (l.Nodes[3].Y < l.Nodes[2].Y) {
		t.Fatalf("edges cross: %+v", l.Nodes)
	}
}
