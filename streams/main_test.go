package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// testCtx is a context for one test's I/O, ended with the test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setup starts a server, applies the default topology and returns a
// JetStream context and a Log on it.
func setup(t *testing.T) (jetstream.JetStream, *streams.Log) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := streams.Apply(testCtx(t), js, streams.Config{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return js, streams.NewLog(js)
}
