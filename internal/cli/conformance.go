package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/conformance"
	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "conformance", args: conformanceArgs, summary: "check a running participant, in any language, against the participant protocol's rules", run: runConformance})
}

const conformanceArgs = "[flags] --action NAME [--undo] [--params JSON] [--fail-params JSON]"

func runConformance(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "conformance", conformanceArgs)
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "10s", "how long to wait for each reply (and for each request to NATS)")
	action := fs.String("action", "", "the action to check (required); its participant must be running, with no other traffic")
	undo := fs.Bool("undo", false, "the action has an undo: check the undo rules")
	params := fs.String("params", "", "JSON params of a request that succeeds (default null)")
	outputs := fs.String("outputs", "", `JSON object: the outputs of the ancestors the action looks up, e.g. '{"flight":{"ref":"F1"}}'`)
	failParams := fs.String("fail-params", "", "JSON params that make the action fail for good (checks permanent errors)")
	transientParams := fs.String("transient-params", "", "JSON params that make the action fail transiently (checks transient errors)")
	quiet := fs.Duration("quiet", 2*time.Second, "how long without a reply means none is coming (malformed requests)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q (the action goes in --action)", errUsage, pos[0])
	}
	if *action == "" {
		return fmt.Errorf("%w: --action is required", errUsage)
	}
	if err := streams.ValidateActionName(*action); err != nil {
		return fmt.Errorf("%w: --action: %v", errUsage, err)
	}
	cfg := conformance.Config{Namespace: conn.ns(), Action: *action, Undo: *undo, Timeout: conn.timeout, Quiet: *quiet}
	for _, f := range []struct {
		name, value string
		dst         *json.RawMessage
	}{{"params", *params, &cfg.Params}, {"fail-params", *failParams, &cfg.FailParams}, {"transient-params", *transientParams, &cfg.TransientParams}} {
		if f.value == "" {
			continue
		}
		if !json.Valid([]byte(f.value)) {
			return fmt.Errorf("%w: --%s is not JSON: %s", errUsage, f.name, f.value)
		}
		*f.dst = json.RawMessage(f.value)
	}
	if *outputs != "" {
		if err := json.Unmarshal([]byte(*outputs), &cfg.Outputs); err != nil {
			return fmt.Errorf("%w: --outputs must be a JSON object of node names to outputs: %v", errUsage, err)
		}
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if !*asJSON {
		fmt.Fprintf(e.stdout, "checking the participant of %s (consumer %s on %s)\n", *action, streams.ActionConsumerName(*action), conn.ns().WorkStream())
	}
	width := 0
	for _, r := range conformance.Rules() {
		width = max(width, len(r.Name))
	}
	each := func(r conformance.Result) {
		if *asJSON {
			return
		}
		fmt.Fprintf(e.stdout, "%-4s  %-*s  %s\n", strings.ToUpper(string(r.Status)), width, r.Rule, r.Title)
		if r.Detail != "" {
			for _, d := range strings.Split(r.Detail, "; ") {
				fmt.Fprintf(e.stdout, "      %-*s  %s\n", width, "", d)
			}
		}
	}
	results, err := conformance.Run(ctx, js, cfg, each)
	if err != nil {
		return err
	}
	count := map[conformance.Status]int{}
	for _, r := range results {
		count[r.Status]++
	}
	if *asJSON {
		if err := writeJSON(e.stdout, results); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "%d passed, %d failed, %d skipped\n", count[conformance.Pass], count[conformance.Fail], count[conformance.Skip])
	}
	if count[conformance.Fail] > 0 {
		return fmt.Errorf("the participant of %s breaks %d of the protocol's rules (docs/protocol.md, \"Rules every participant follows\")", *action, count[conformance.Fail])
	}
	return nil
}
