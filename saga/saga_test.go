package saga_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/saga"
)

func vmDef(t *testing.T) *saga.Definition {
	t.Helper()
	instance := saga.New("instance").
		Then(saga.Action("create", "vm.create").Undo("vm.delete")).
		Then(saga.Action("boot", "vm.boot").Reads("create")).
		MustBuild()
	def, err := saga.New("vm.provision").
		Then(saga.Constant("config", map[string]any{"cpus": 2, "image": "debian"})).
		Parallel(
			saga.Action("ip", "net.allocate_ip").Undo("net.release_ip").Timeout(5*time.Second),
			saga.Action("disk", "storage.create_disk").Undo("storage.delete_disk").
				Retry(saga.RetryPolicy{MaxAttempts: 5, InitialDelay: saga.Duration(100 * time.Millisecond), MaxDelay: saga.Duration(2 * time.Second)}),
		).
		Then(saga.Subsaga("instance", instance, "config")).
		Then(saga.Action("attach", "vm.attach_disk").Undo("vm.detach_disk").After("instance", "disk").Reads("disk", "instance")).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func TestBuilderStagesBecomeDependencies(t *testing.T) {
	t.Parallel()
	def := vmDef(t)
	got := map[string][]string{}
	for _, n := range def.Nodes {
		got[n.Name] = n.After
	}
	want := map[string][]string{
		"config":   nil,
		"ip":       {"config"},
		"disk":     {"config"},
		"instance": {"ip", "disk"},
		"attach":   {"instance", "disk"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("dependencies:\n got %v\nwant %v", got, want)
	}
}

func TestRoundTripJSONAndYAML(t *testing.T) {
	t.Parallel()
	def := vmDef(t)
	j, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := saga.ParseJSON(j)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, def) {
		t.Fatalf("JSON round trip differs:\n got %+v\nwant %+v", fromJSON, def)
	}
	y, err := def.YAML()
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := saga.ParseYAML(y)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if !reflect.DeepEqual(fromYAML, def) {
		t.Fatalf("YAML round trip differs:\n%s\n got %+v\nwant %+v", y, fromYAML, def)
	}
	if !strings.Contains(string(y), "timeout: 5s") {
		t.Errorf("durations should be written as strings in YAML:\n%s", y)
	}
}

func TestParseRejectsUnknownFieldsAndBadDurations(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"name":"x","nodes":[{"name":"a","kind":"action","action":"a","timout":"1s"}]}`,
		`{"name":"x","nodes":[{"name":"a","kind":"action","action":"a","timeout":5}]}`,
		`{"name":"x","nodes":[{"name":"a","kind":"action","action":"a","timeout":"5 parsecs"}]}`,
		"name: x\nnodes: [",
	} {
		if _, err := saga.ParseYAML([]byte(in)); err == nil {
			t.Errorf("ParseYAML(%s) = nil error", in)
		}
	}
	if _, err := saga.ParseJSON([]byte(`{"name":"x"} {"name":"y"}`)); err == nil {
		t.Error("ParseJSON accepted trailing data")
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	t.Parallel()
	def := &saga.Definition{Name: "bad", Output: "nope", Nodes: []saga.Node{
		{Name: "a", Kind: saga.KindAction, Action: "a", After: []string{"c"}},
		{Name: "b", Kind: saga.KindAction, Action: "b", After: []string{"a"}},
		{Name: "c", Kind: saga.KindAction, Action: "c", After: []string{"b"}},
		{Name: "a", Kind: saga.KindAction, Action: "dup"},
		{Name: "d", Kind: saga.KindAction, Action: "d", After: []string{"ghost", "d"}},
		{Name: "e", Kind: saga.KindAction, Action: "bad action", Reads: []string{"f"}},
		{Name: "f", Kind: saga.KindAction, Action: "f", Retry: &saga.RetryPolicy{MaxAttempts: 0}},
		{Name: "s", Kind: saga.KindSubsaga, Params: "f", Saga: &saga.Definition{Name: "inner", Nodes: []saga.Node{
			{Name: "x", Kind: saga.KindConstant},
		}}},
		{Name: "k", Kind: saga.KindConstant, Value: json.RawMessage(`{`)},
		{Name: "w", Kind: "wizard"},
	}}
	err := saga.Validate(def)
	var ve *saga.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, saga.ErrInvalid) {
		t.Fatalf("Validate = %v, want *ValidationError", err)
	}
	for _, want := range []string{
		`node "a": duplicate node name`,
		`node "a": is on a cycle of dependencies: a, b, c`,
		`node "d": depends on unknown node "ghost"`,
		`node "d": depends on itself`,
		`node "e": reads the output of "f", which is not an ancestor`,
		`node "e": action name "bad action" has the character ' '`,
		`node "f": retry policy: max_attempts is 0, want at least 1`,
		`node "s": subsaga params come from "f", which is not an ancestor`,
		`node "s/x": constant has no value`,
		`node "k": constant value is not valid JSON`,
		`node "w": unknown kind "wizard"`,
		`output names unknown node "nope"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestBuilderReportsEmptyStage(t *testing.T) {
	t.Parallel()
	_, err := saga.New("x").Then(saga.Action("a", "a")).Parallel().Build()
	if err == nil || !strings.Contains(err.Error(), "stage 2 is empty") {
		t.Fatalf("err = %v, want empty stage", err)
	}
	_, err = saga.New("").Build()
	if err == nil || !strings.Contains(err.Error(), "has no nodes") || !strings.Contains(err.Error(), "saga name is empty") {
		t.Fatalf("err = %v", err)
	}
}

func TestCompileFlattensSubsagas(t *testing.T) {
	t.Parallel()
	g, err := saga.Compile(vmDef(t))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, n := range g.Nodes {
		paths = append(paths, n.Path)
		for _, p := range n.Parents {
			if p >= n.Index {
				t.Errorf("node %s has parent %d not before it", n.Path, p)
			}
		}
	}
	want := []string{"config", "ip", "disk", "instance/@start", "instance/create", "instance/boot", "instance", "attach"}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths = %v, want %v", paths, want)
	}
	node := func(p string) *saga.GraphNode {
		n, ok := g.Node(p)
		if !ok {
			t.Fatalf("no node %s", p)
		}
		return n
	}
	start, end := node("instance/@start"), node("instance")
	if g.Nodes[start.ParamsFrom].Path != "config" {
		t.Errorf("subsaga params from %d, want config", start.ParamsFrom)
	}
	if g.Nodes[end.OutputFrom].Path != "instance/boot" {
		t.Errorf("subsaga output from %d, want instance/boot", end.OutputFrom)
	}
	if g.Nodes[g.Output].Path != "attach" {
		t.Errorf("saga output = %d", g.Output)
	}
	boot := node("instance/boot")
	if boot.ScopeStart != start.Index {
		t.Errorf("boot scope start = %d", boot.ScopeStart)
	}
	if got := keys(boot.Visible); !reflect.DeepEqual(got, []string{"create"}) {
		t.Errorf("boot sees %v", got)
	}
	if _, err := g.Lookup(boot.Index, "ip"); !errors.Is(err, saga.ErrUnknownNode) || !strings.Contains(err.Error(), "no node of that name in its scope") {
		t.Errorf("lookup across scope: %v", err)
	}
	attach := node("attach")
	if i, err := g.Lookup(attach.Index, "instance"); err != nil || i != end.Index {
		t.Errorf("attach looks up instance = %d, %v", i, err)
	}
	if _, err := g.Lookup(attach.Index, "ip"); err == nil || !strings.Contains(err.Error(), "not an ancestor") {
		t.Errorf("lookup of undeclared read: %v", err)
	}
	create := node("instance/create")
	if len(create.Parents) != 1 || create.Parents[0] != start.Index {
		t.Errorf("create parents = %v", create.Parents)
	}
}

func TestLookupOfNonAncestor(t *testing.T) {
	t.Parallel()
	g, err := saga.Compile(saga.New("x").Parallel(saga.Action("a", "a"), saga.Action("b", "b")).MustBuild())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Lookup(0, "b"); err == nil || !strings.Contains(err.Error(), `node "a" cannot look up "b": it is not an ancestor`) {
		t.Fatalf("err = %v", err)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	p := saga.RetryPolicy{MaxAttempts: 10, InitialDelay: saga.Duration(time.Second), MaxDelay: saga.Duration(5 * time.Second)}
	var got []time.Duration
	for a := 1; a <= 5; a++ {
		got = append(got, p.Delay(a))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
