package streams_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/streams"
)

func ExampleLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "jetsaga-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Port: -1})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)

	if err := streams.Apply(ctx, js, streams.Config{}); err != nil {
		panic(err)
	}
	log := streams.NewLog(js)
	id := "0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e"

	// Create the saga: an append at position 0 happens exactly once.
	seq, _ := log.Append(ctx, id, 0, []byte(`{"type":"saga.created"}`))
	_, err = log.Append(ctx, id, 0, []byte(`{"type":"saga.created","by":"someone else"}`))
	fmt.Println("second create conflicts:", errors.Is(err, streams.ErrConflict))

	// Append after the last known position.
	if _, err := log.Append(ctx, id, seq, []byte(`{"type":"node.started"}`)); err != nil {
		panic(err)
	}
	entries, _ := log.Read(ctx, id, 0)
	for _, e := range entries {
		fmt.Println(e.Seq, string(e.Data))
	}
	// Output:
	// second create conflicts: true
	// 1 {"type":"saga.created"}
	// 2 {"type":"node.started"}
}
