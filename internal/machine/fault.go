package machine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
)

// CheckFaults reports every fault that cannot apply to a saga with graph
// g: a bad value, a node that is not one of g's action nodes, or a second
// fault for one node.
func CheckFaults(g *saga.Graph, faults []events.Fault) error {
	var errs []error
	seen := map[string]bool{}
	for i, f := range faults {
		if err := CheckFault(g, f); err != nil {
			errs = append(errs, fmt.Errorf("faults[%d]: %w", i, err))
			continue
		}
		if seen[f.Node] {
			errs = append(errs, fmt.Errorf("faults[%d]: node %q has a fault already; give one per node", i, f.Node))
		}
		seen[f.Node] = true
	}
	return errors.Join(errs...)
}

// CheckFault reports whether f can apply to a saga with graph g.
func CheckFault(g *saga.Graph, f events.Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	n, ok := g.Node(f.Node)
	if !ok {
		return fmt.Errorf("the saga has no node %q (action nodes: %s)", f.Node, strings.Join(ActionNodes(g), ", "))
	}
	if !hasParticipant(n) {
		return fmt.Errorf("faults apply to action nodes; %q is a %s node (action nodes: %s)", f.Node, n.Kind, strings.Join(ActionNodes(g), ", "))
	}
	return checkUndoFault(n, f)
}

// checkUndoFault refuses a fault on the undo of a node that has none: no
// undo is ever requested for it, so the fault could never apply.
func checkUndoFault(n *saga.GraphNode, f events.Fault) error {
	if hasUndoRequest(n) {
		return nil
	}
	switch {
	case f.FailUndo:
		return fmt.Errorf("node %q has no undo, so fail-undo cannot apply to it", f.Node)
	case f.UndoRepeat > 0:
		return fmt.Errorf("node %q has no undo, so undo-repeat cannot apply to it", f.Node)
	}
	return nil
}

// ActionNodes lists the paths of g's action nodes in graph order.
func ActionNodes(g *saga.Graph) []string {
	var out []string
	for _, n := range g.Nodes {
		if hasParticipant(n) {
			out = append(out, n.Path)
		}
	}
	return out
}
