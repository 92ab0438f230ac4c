package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/jetsaga/jetsaga/client"
)

func init() {
	register(command{name: "signal", args: "[flags] SAGA_ID NODE [--data JSON | --reject REASON] [--id ID] [--wait]",
		summary: "send the signal an await node waits for (its data becomes the node's output)", run: runSignal})
}

func runSignal(ctx context.Context, e *env, args []string) error {
	const usage = "[flags] SAGA_ID NODE [--data JSON | --reject REASON] [--id ID] [--wait]"
	fs := newFlags(e, "signal", usage)
	conn := addConnFlags(fs)
	setDefault(fs, "timeout", "1m", "how long to wait for NATS and, with --wait, for the saga")
	data := fs.String("data", "null", "the signal's data, as JSON: the await node's output")
	reject := fs.String("reject", "", "reject the node instead, for this reason: it fails for good")
	sigID := fs.String("id", "", "the signal's id; sent again with the same id it is taken once (default: a new id)")
	sender := fs.String("sender", operatorName(), "who sends it, recorded in the saga's log (default $USER)")
	wait := fs.Bool("wait", false, "wait until the saga has ended, or is stuck or waiting for an operator; print its status")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	dataSet := false
	fs.Visit(func(f *flag.Flag) { dataSet = dataSet || f.Name == "data" })
	switch {
	case len(pos) != 2:
		return fmt.Errorf("%w: want a saga id and an await node", errUsage)
	case *reject != "" && dataSet:
		return fmt.Errorf("%w: give --data or --reject, not both", errUsage)
	case !json.Valid([]byte(*data)):
		return fmt.Errorf("%w: --data must be JSON (a string is \"quoted\"), got %q", errUsage, *data)
	}
	id, node := pos[0], pos[1]
	if err := sagaIDArg(id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	nc, cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	opts := []client.SignalOption{client.WithSender(*sender)}
	if *sigID != "" {
		opts = append(opts, client.WithSignalID(*sigID))
	}
	if *reject != "" {
		err = cl.Reject(ctx, id, node, *reject, opts...)
	} else {
		err = cl.Signal(ctx, id, node, json.RawMessage(*data), opts...)
	}
	if err != nil {
		if errors.Is(err, client.ErrSignalRefused) {
			return errors.New(strings.TrimPrefix(err.Error(), "client: "))
		}
		return noSaga(id, err)
	}
	if !*wait {
		what := "signal"
		if *reject != "" {
			what = "rejection"
		}
		fmt.Fprintf(e.stdout, "%s for %s of saga %s taken (by %s)\n", what, node, id, *sender)
		return nil
	}
	s, err := cl.Wait(ctx, id)
	if err != nil {
		return err
	}
	printSaga(e.stdout, s)
	return nil
}
