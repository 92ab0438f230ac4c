package cli

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/streams"
)

// jetsaga conformance against a Go participant passes every rule it can
// check with the params given (exit 0); against an action nobody serves
// it fails the consumer rule and skips the rest (exit 1).
func TestConformanceCommand(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := participant.New(js, participant.Config{Name: "cli-conf"})
	if err != nil {
		t.Fatal(err)
	}
	do := func(_ context.Context, r *participant.Request) (any, error) {
		if strings.Contains(string(r.Params), "sold out") {
			return nil, participant.Permanent(errors.New("sold out"))
		}
		return map[string]int{"attempt": r.Attempt}, nil
	}
	undo := func(context.Context, *participant.Request) (any, error) { return nil, nil }
	if err := p.Register("cli.conf", do, undo); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })

	code, out, errs := run(t, "conformance", "--server", srv.ClientURL(), "--action", "cli.conf", "--undo",
		"--params", `{"item":"book"}`, "--fail-params", `{"item":"sold out"}`, "--quiet", "300ms")
	if code != 0 || !strings.Contains(out, "11 passed, 0 failed, 1 skipped") || !strings.Contains(out, "SKIP  transient") {
		t.Fatalf("conformance of a Go participant: code %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "conformance", "--server", srv.ClientURL(), "--action", "nobody.home", "--json")
	if code != 1 || !strings.Contains(out, `"status": "fail"`) || !strings.Contains(errs, "breaks 1 of the protocol's rules") {
		t.Fatalf("conformance of an action nobody serves: code %d\n%s\n%s", code, out, errs)
	}
}
