package saga

import "fmt"

// pivotProblems checks the pivots of a flattened graph: every other node
// must come before a pivot (the pivot depends on it: it is undone if the
// saga unwinds before the pivot succeeds) or after it (it depends on the
// pivot: it is retried forward and never undone). A node beside a pivot
// would make a failure ambiguous: unwind it, or go forward? So it is an
// error, and so is an undo on a node after a pivot, which could never run.
func (g *Graph) pivotProblems() []Problem {
	var probs []Problem
	for _, p := range g.Nodes {
		if !p.Spec.Pivot || p.Kind == KindSubsagaStart {
			continue
		}
		before := g.ancestors(p.Index)
		if p.Kind == KindSubsaga {
			// A subsaga is a pivot as a whole: its start and inner
			// nodes come before its end.
			before[p.OwnStart] = true
		}
		for _, n := range g.Nodes {
			if n.Index == p.Index || before[n.Index] || n.Kind == KindSubsagaStart {
				continue
			}
			if !g.ancestors(n.Index)[p.Index] {
				probs = append(probs, Problem{Node: n.Path, Msg: fmt.Sprintf(
					"runs beside pivot %q: make it depend on %q (it is then retried forward, never undone) or make %q depend on it (it is then undone if the saga unwinds before the pivot)",
					p.Path, p.Path, p.Path)})
				continue
			}
			if n.Spec.Undo != "" {
				probs = append(probs, Problem{Node: n.Path, Msg: fmt.Sprintf("has an undo, but it comes after pivot %q, so it is never undone: remove the undo", p.Path)})
			}
			if n.Spec.OnFailure == Unwind {
				probs = append(probs, Problem{Node: n.Path, Msg: fmt.Sprintf("says on_failure: unwind, but it comes after pivot %q, past which the saga cannot unwind", p.Path)})
			}
		}
	}
	return probs
}
