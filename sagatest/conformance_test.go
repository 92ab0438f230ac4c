package sagatest_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/conformance"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/sagatest"
	"github.com/jetsaga/jetsaga/streams"
)

// The Go SDK's participant, with its barrier, keeps every rule of the
// protocol. Its action's output is an id made per run, so a second run
// would show.
func TestGoParticipantConforms(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := participant.New(js, participant.Config{Name: "conforming"})
	if err != nil {
		t.Fatal(err)
	}
	do := func(_ context.Context, r *participant.Request) (any, error) {
		var params struct{ Fail string }
		if err := r.DecodeParams(&params); err != nil {
			return nil, err
		}
		switch params.Fail {
		case "permanent":
			return nil, participant.Permanent(errFail)
		case "transient":
			return nil, errFail
		}
		return map[string]string{"run": uuid.NewString()}, nil
	}
	undo := func(context.Context, *participant.Request) (any, error) { return nil, nil }
	if err := p.Register("conf.act", do, undo); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	sagatest.Conformance(t, js, conformance.Config{
		Action: "conf.act", Undo: true,
		Params:          json.RawMessage(`{}`),
		FailParams:      json.RawMessage(`{"fail":"permanent"}`),
		TransientParams: json.RawMessage(`{"fail":"transient"}`),
		Quiet:           500 * time.Millisecond,
	})
}

var errFail = errorString("asked to fail")

type errorString string

func (e errorString) Error() string { return string(e) }
