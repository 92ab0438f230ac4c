package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// A node's `when` is a CEL expression (https://cel.dev) over two
// variables: params, the params of the node's scope (the saga's, or a
// subsaga's), and outputs, a map from the names of the node's ancestors in
// its scope to their outputs (a skipped ancestor is absent: test it with
// has(outputs.name)). JSON numbers are doubles; comparisons between ints
// and doubles work as in arithmetic. The expression must give a bool.
//
// CEL was chosen over a home-made language because it is made for exactly
// this (Kubernetes validation rules, Envoy, Google IAM conditions): no
// side effects, no loops beyond bounded macros, a type checker that finds
// errors before a saga runs, and a cost limit that bounds evaluation.

// WhenCostLimit bounds the evaluation of one condition, in CEL's cost
// units (about one per operation). A condition that exceeds it fails its
// node.
const WhenCostLimit = 100_000

// Condition is a compiled `when` expression.
type Condition struct {
	// Expr is the expression as written.
	Expr string
	// Refs are the ancestor names it reads from outputs, sorted.
	Refs []string
	prg  cel.Program
}

var whenEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("params", cel.DynType),
		cel.Variable("outputs", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
	)
})

// compiled caches conditions by expression: a definition is compiled for
// every saga read afresh, and the same expression then shares one program
// (and compares equal in a replay check).
var compiled sync.Map // string -> *Condition

// CompileWhen parses and type-checks a condition and lists the outputs it
// reads. It does not check that those are ancestors: Validate does.
func CompileWhen(expr string) (*Condition, error) {
	if c, ok := compiled.Load(expr); ok {
		return c.(*Condition), nil
	}
	c, err := compileWhen(expr)
	if err != nil {
		return nil, err
	}
	actual, _ := compiled.LoadOrStore(expr, c)
	return actual.(*Condition), nil
}

func compileWhen(expr string) (*Condition, error) {
	env, err := whenEnv()
	if err != nil {
		return nil, fmt.Errorf("condition environment: %w", err)
	}
	checked, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("%w", iss.Err())
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("gives %s, want bool", t)
	}
	refs, err := outputRefs(checked.NativeRep())
	if err != nil {
		return nil, err
	}
	prg, err := env.Program(checked, cel.CostLimit(WhenCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, err
	}
	return &Condition{Expr: expr, Refs: refs, prg: prg}, nil
}

// outputRefs lists the names read as outputs.NAME or outputs["NAME"].
func outputRefs(a *ast.AST) ([]string, error) {
	var refs []string
	var bad error
	isOutputs := func(e ast.Expr) bool { return e.Kind() == ast.IdentKind && e.AsIdent() == "outputs" }
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			if s := e.AsSelect(); isOutputs(s.Operand()) {
				refs = append(refs, s.FieldName())
			}
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != operators.Index || len(c.Args()) != 2 || !isOutputs(c.Args()[0]) {
				return
			}
			lit := c.Args()[1]
			if lit.Kind() == ast.LiteralKind {
				if s, ok := lit.AsLiteral().Value().(string); ok {
					refs = append(refs, s)
					return
				}
			}
			if bad == nil {
				bad = errors.New("outputs must be indexed by a node name in quotes (outputs[\"name\"]) or read as outputs.name")
			}
		}
	}))
	slices.Sort(refs)
	return slices.Compact(refs), bad
}

// Eval evaluates the condition with the params of the node's scope and the
// outputs of its ancestors (JSON; nil or absent for skipped ones).
func (c *Condition) Eval(params json.RawMessage, outputs map[string]json.RawMessage) (bool, error) {
	p, err := decodeJSON(params)
	if err != nil {
		return false, fmt.Errorf("params: %w", err)
	}
	outs := make(map[string]any, len(outputs))
	for name, raw := range outputs {
		if raw == nil {
			continue
		}
		v, err := decodeJSON(raw)
		if err != nil {
			return false, fmt.Errorf("output of %q: %w", name, err)
		}
		outs[name] = v
	}
	val, _, err := c.prg.Eval(map[string]any{"params": p, "outputs": outs})
	if err != nil {
		return false, err
	}
	b, ok := val.Value().(bool)
	if !ok {
		return false, fmt.Errorf("gave %v (%s), want a bool", val.Value(), val.Type().TypeName())
	}
	return b, nil
}

func decodeJSON(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}
