package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/saga"
)

func init() {
	register(command{name: "start", args: startArgs, summary: "start a saga from a definition file and print its id", run: runStart})
}

const startArgs = "-f saga.yaml [--params '{json}' | --params-file f] [--key K | --id UUID] [--meta k=v ...] [--fault NODE:SPEC ...] [--wait] [--timeout 1m]"

func runStart(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "start", startArgs)
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "1m", "how long start waits for NATS and, with --wait, for the saga to end")
	file := fs.String("f", "", "definition file (YAML or JSON)")
	params := fs.String("params", "", "the saga's params, as JSON")
	paramsFile := fs.String("params-file", "", "file holding the saga's params as JSON")
	key := fs.String("key", "", "idempotency key: starting with the same key again returns the same saga")
	id := fs.String("id", "", "the saga's id (a UUID); default a new one")
	meta := metaFlag{}
	fs.Var(meta, "meta", "label the saga: key=value (repeatable)")
	var faults faultsFlag
	fs.Var(&faults, "fault", "inject a fault, for testing: NODE:SPEC, SPEC a comma list of fail-action, fail-undo, repeat=N, undo-repeat=N, delay=DUR (repeatable; see jetsaga fault -h)")
	wait := fs.Bool("wait", false, "wait for the saga to end and print its status; exit 1 unless it succeeded")
	asJSON := fs.Bool("json", false, `print JSON: {"id": …}, or with --wait the saga's status`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	case *file == "":
		return fmt.Errorf("%w: -f is required", errUsage)
	case *params != "" && *paramsFile != "":
		return fmt.Errorf("%w: give --params or --params-file, not both", errUsage)
	case *key != "" && *id != "":
		return fmt.Errorf("%w: give --key or --id, not both (a key determines the id)", errUsage)
	}
	if *id != "" {
		if err := sagaIDArg(*id); err != nil {
			return fmt.Errorf("--id: %w", err)
		}
	}
	var raw json.RawMessage
	switch {
	case *params != "":
		if !json.Valid([]byte(*params)) {
			return fmt.Errorf("%w: --params is not valid JSON: %v", errUsage, jsonError(*params))
		}
		raw = json.RawMessage(*params)
	case *paramsFile != "":
		b, err := os.ReadFile(*paramsFile)
		if err != nil {
			return fmt.Errorf("--params-file: %w", err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("--params-file %s is not valid JSON: %v", *paramsFile, jsonError(string(b)))
		}
		raw = b
	}
	def, err := readDefinition(*file)
	if err != nil {
		return err
	}
	if err := saga.Validate(def); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}

	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	nc, cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	var opts []client.StartOption
	switch {
	case *key != "":
		opts = append(opts, client.WithIdempotencyKey(*key))
	case *id != "":
		opts = append(opts, client.WithSagaID(*id))
	}
	if len(meta) > 0 {
		opts = append(opts, client.WithMetadata(meta))
	}
	if len(faults) > 0 {
		opts = append(opts, client.WithFaults(faults...))
	}
	var p any // nil params are JSON null
	if raw != nil {
		p = raw
	}
	sagaID, err := cl.Start(ctx, def, p, opts...)
	if err != nil {
		return err
	}
	if !*wait {
		if *asJSON {
			return writeJSON(e.stdout, map[string]string{"id": sagaID})
		}
		fmt.Fprintln(e.stdout, sagaID)
		return nil
	}
	s, err := cl.Wait(ctx, sagaID)
	if err != nil {
		return waitError(sagaID, conn.timeout, err)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, s); err != nil {
			return err
		}
	} else {
		printSaga(e.stdout, s)
	}
	return outcome(s)
}

// outcome is nil for a saga that succeeded, else an error saying how it
// ended.
func outcome(s *client.Saga) error {
	if s.Status == client.StatusSucceeded {
		return nil
	}
	why := unwindWhy(s)
	switch s.Status {
	case client.StatusStuck:
		why = "waiting for an operator: " + why
	case client.StatusWaiting:
		why = fmt.Sprintf("waiting for an operator: %s failed (jetsaga retry|skip %s NODE, or abort)", strings.Join(s.Held, ", "), s.ID)
	}
	if why != "" {
		return fmt.Errorf("saga %s %s: %s", s.ID, s.Status, why)
	}
	return fmt.Errorf("saga %s %s", s.ID, s.Status)
}

// waitError explains a wait that ended without an answer.
func waitError(id string, timeout time.Duration, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("saga %s: still not done after %s (is a coordinator running? see jetsaga status; jetsaga watch %s follows it)", id, timeout, id)
	}
	return noSaga(id, err)
}

// jsonError says where JSON is malformed.
func jsonError(s string) error {
	var v any
	err := json.Unmarshal([]byte(s), &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%v (at byte %d)", err, se.Offset)
	}
	return err
}
