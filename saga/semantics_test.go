package saga_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/saga"
)

// problemsOf returns a definition's validation problems as "node: msg".
func problemsOf(t *testing.T, d *saga.Definition) []string {
	t.Helper()
	err := saga.Validate(d)
	if err == nil {
		return nil
	}
	var ve *saga.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %T %v, want *ValidationError", err, err)
	}
	var out []string
	for _, p := range ve.Problems {
		out = append(out, p.Node+": "+p.Msg)
	}
	return out
}

func TestValidationOfWaitsConditionsPivotsAndDeadlines(t *testing.T) {
	t.Parallel()
	act := func(name, action string, after ...string) saga.Node {
		return saga.Node{Name: name, Kind: saga.KindAction, Action: action, After: after}
	}
	sub := &saga.Definition{Name: "inner", Nodes: []saga.Node{act("x", "a.x")}, Deadline: saga.Duration(time.Minute)}
	cases := []struct {
		name string
		def  saga.Definition
		want []string // substrings, one per problem, in order
	}{
		{"valid", saga.Definition{Name: "ok", Deadline: saga.Duration(time.Hour), OnDeadline: saga.Pause, OnFailure: saga.Pause, Nodes: []saga.Node{
			act("reserve", "inv.reserve"),
			{Name: "approval", Kind: saga.KindAwait, Event: "order.approved", After: []string{"reserve"}, Timeout: saga.Duration(time.Hour), Undo: "mail.withdrawn"},
			{Name: "capture", Kind: saga.KindAction, Action: "pay.capture", After: []string{"approval"}, Pivot: true, When: `outputs.approval.ok && params.amount > 10`},
			{Name: "ship", Kind: saga.KindAction, Action: "ship.send", After: []string{"capture"}, When: `has(outputs.capture)`},
		}}, nil},
		{"missing kind", saga.Definition{Name: "k", Nodes: []saga.Node{{Name: "a", Action: "x.y"}}}, []string{`a: kind is missing`}},
		{"await without event", saga.Definition{Name: "w", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAwait}}}, []string{`a: an await node needs the event`}},
		{"await with action", saga.Definition{Name: "w", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAwait, Event: "e", Action: "x"}}}, []string{`a: an await node has an event`}},
		{"event on action", saga.Definition{Name: "w", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAction, Action: "x", Event: "e"}}}, []string{`a: event is for await nodes`}},
		{"bad expression", saga.Definition{Name: "c", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAction, Action: "x", When: "params.a >"}}}, []string{`a: when "params.a >": ERROR`}},
		{"not a bool", saga.Definition{Name: "c", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAction, Action: "x", When: `"yes"`}}}, []string{`gives string, want bool`}},
		{"unknown variable", saga.Definition{Name: "c", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAction, Action: "x", When: `input.a`}}}, []string{`undeclared reference to 'input'`}},
		{"reads non-ancestor", saga.Definition{Name: "c", Nodes: []saga.Node{act("a", "x"), {Name: "b", Kind: saga.KindAction, Action: "y", When: `outputs.a.ok && outputs["zz"] == 1`}}},
			[]string{`b: when "outputs.a.ok && outputs[\"zz\"] == 1" reads the output of "a", which is not an ancestor`, `b: when "outputs.a.ok && outputs[\"zz\"] == 1" reads the output of unknown node "zz"`}},
		{"computed index", saga.Definition{Name: "c", Nodes: []saga.Node{{Name: "b", Kind: saga.KindAction, Action: "y", When: `outputs[params.n] == 1`}}}, []string{`outputs must be indexed by a node name in quotes`}},
		{"bad policies", saga.Definition{Name: "p", OnFailure: "retry", OnDeadline: "never", Nodes: []saga.Node{{Name: "a", Kind: saga.KindAction, Action: "x", OnFailure: "stop"}}},
			[]string{`on_failure is "retry"`, `on_deadline is "never"`, `a: on_failure is "stop"`}},
		{"deadline in subsaga", saga.Definition{Name: "d", Nodes: []saga.Node{{Name: "s", Kind: saga.KindSubsaga, Saga: sub}}}, []string{`s: deadline and on_deadline apply to the whole saga`}},
		{"node beside pivot", saga.Definition{Name: "p", Nodes: []saga.Node{
			act("a", "x.a"), {Name: "capture", Kind: saga.KindAction, Action: "pay.capture", Pivot: true, After: []string{"a"}}, act("side", "x.side", "a"),
		}}, []string{`side: runs beside pivot "capture"`}},
		{"undo after pivot", saga.Definition{Name: "p", Nodes: []saga.Node{
			{Name: "capture", Kind: saga.KindAction, Action: "pay.capture", Pivot: true},
			{Name: "ship", Kind: saga.KindAction, Action: "ship.send", Undo: "ship.recall", After: []string{"capture"}, OnFailure: saga.Unwind},
		}}, []string{`ship: has an undo, but it comes after pivot "capture"`, `ship: says on_failure: unwind, but it comes after pivot "capture"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := problemsOf(t, &c.def)
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n%s\nwant %d containing %q", strings.Join(got, "\n"), len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d is %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestConditionEvaluation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr    string
		params  string
		outputs map[string]json.RawMessage
		want    bool
		err     string
	}{
		{`params.amount > 100`, `{"amount": 250}`, nil, true, ""},
		{`params.amount > 100`, `{"amount": 99.5}`, nil, false, ""},
		{`params.count == 3`, `{"count": 3}`, nil, true, ""},
		{`outputs.approve.ok`, `null`, map[string]json.RawMessage{"approve": json.RawMessage(`{"ok":true}`)}, true, ""},
		{`has(outputs.approve)`, `null`, map[string]json.RawMessage{"approve": nil}, false, ""},
		{`params.missing > 1`, `{}`, nil, false, "no such key: missing"},
		{`params.x`, `{"x": "yes"}`, nil, false, "want a bool"},
		{`[1,2,3].all(i, [1,2,3,4,5,6,7,8,9,10].all(j, [1,2,3,4,5,6,7,8,9,10].all(k, [1,2,3,4,5,6,7,8,9,10].all(l, [1,2,3,4,5,6,7,8,9,10].all(m, i+j+k+l+m > 0)))))`, `null`, nil, false, "cost limit"},
	}
	for _, c := range cases {
		cond, err := saga.CompileWhen(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		got, err := cond.Eval(json.RawMessage(c.params), c.outputs)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.expr, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.expr, err)
		case c.err == "" && got != c.want:
			t.Errorf("%s = %v, want %v", c.expr, got, c.want)
		}
	}
}

func TestBuilderForWaitsAndPivots(t *testing.T) {
	t.Parallel()
	def, err := saga.New("order").OnFailure(saga.Pause).Deadline(time.Hour, saga.Unwind).
		Then(saga.Action("reserve", "inv.reserve").Undo("inv.release")).
		Then(saga.Await("approval", "order.approved").Timeout(24 * time.Hour)).
		Then(saga.Action("capture", "pay.capture").Pivot().When(`outputs.approval.ok`)).
		Then(saga.Action("ship", "ship.send").OnFailure(saga.Pause)).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	g, err := saga.Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	capture, _ := g.Node("capture")
	if capture.When == nil || capture.WhenInputs["approval"] != 1 || capture.OnFailure != saga.Pause {
		t.Fatalf("capture: when %v inputs %v policy %q", capture.When, capture.WhenInputs, capture.OnFailure)
	}
	if _, err := saga.New("bad").Then(saga.Action("a", "x").Pivot()).Parallel(saga.Action("b", "y").Undo("z"), saga.Action("c", "w")).Build(); err == nil {
		t.Fatal("undos after a pivot: no error")
	}
}
