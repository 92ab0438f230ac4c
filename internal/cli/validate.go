package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jetsaga/jetsaga/saga"
)

func init() {
	register(command{name: "validate", args: "-f saga.yaml", summary: "check a saga definition file and print its DAG", run: runValidate})
}

func runValidate(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "validate", "-f saga.yaml")
	file := fs.String("f", "", "definition file (YAML or JSON)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: -f is required", errUsage)
	}
	def, err := readDefinition(*file)
	if err != nil {
		return err
	}
	g, err := saga.Compile(def)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "saga %q: %d nodes, valid\n", def.Name, len(g.Nodes))
	if def.Deadline > 0 {
		on := def.OnDeadline
		if on == "" {
			on = saga.Unwind
		}
		fmt.Fprintf(e.stdout, "  deadline %s, then %s\n", def.Deadline.Std(), on)
	}
	for _, n := range g.Nodes {
		var deps []string
		for _, p := range n.Parents {
			deps = append(deps, g.Nodes[p].Path)
		}
		what := string(n.Kind)
		switch n.Kind {
		case saga.KindAction:
			what = n.Spec.Action
			if n.Spec.Undo != "" {
				what += " / undo " + n.Spec.Undo
			}
		case saga.KindAwait:
			what = "await " + n.Spec.Event
			if n.Spec.Timeout > 0 {
				what += " (timeout " + n.Spec.Timeout.Std().String() + ")"
			}
			if n.Spec.Undo != "" {
				what += " / undo " + n.Spec.Undo
			}
		}
		if n.Spec.Pivot && n.Kind != saga.KindSubsagaStart {
			what += " [pivot]"
		}
		if n.OnFailure == saga.Pause && n.Kind != saga.KindSubsagaStart {
			what += " [on failure: pause]"
		}
		if n.When != nil {
			what += " when " + n.When.Expr
		}
		after := ""
		if len(deps) > 0 {
			after = " after " + strings.Join(deps, ", ")
		}
		fmt.Fprintf(e.stdout, "  %-24s %s%s\n", n.Path, what, after)
	}
	return nil
}

// readDefinition reads a definition from a YAML or JSON file.
func readDefinition(path string) (*saga.Definition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// A .json file is read as JSON, anything else as YAML (JSON is YAML
	// too); an error says which, without the other's words.
	format, parse := "YAML", saga.ParseYAML
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format, parse = "JSON", saga.ParseJSON
	}
	def, err := parse(b)
	if err != nil {
		msg := err.Error()
		for _, p := range []string{"saga: parse definition: ", "error converting YAML to JSON: ", "yaml: ", "json: "} {
			msg = strings.TrimPrefix(msg, p)
		}
		return nil, fmt.Errorf("%s: %s: %s", path, format, msg)
	}
	return def, nil
}
