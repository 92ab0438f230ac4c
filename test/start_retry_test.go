package test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

// A coordinator started before its server retries, says so, and comes up
// with the server (issue 12, §1): it does not exit on a server that is
// merely not there yet.
func TestStartRetriesUntilTheServerIsThere(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var retries atomic.Int64
	logger := slog.New(countingHandler{msg: "cannot start yet; retrying", n: &retries})
	c, err := coordinator.New(js, coordinator.Config{Name: "early", Topology: testTopo(), Logger: logger, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- c.Start(ctxT(t)) }()
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case err := <-started:
			t.Fatalf("Start returned before there was a server: %v", err)
		default:
		}
		if retries.Load() < 2 {
			return fmt.Errorf("%d retries logged", retries.Load())
		}
		return nil
	})
	srv, err := embedded.Start(ctxT(t), embedded.Config{Dir: t.TempDir(), Port: port, ServerName: "late"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// Cleanups run last first: the coordinator stops before the server.
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if err := <-started; err != nil {
		t.Fatalf("Start once the server is there: %v", err)
	}
	cl, err := client.New(ctxT(t), js)
	if err != nil {
		t.Fatal(err)
	}
	startRaw(t, js, succeedAll)
	id, err := cl.Start(ctxT(t), trip(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := cl.Wait(ctxT(t), id); err != nil || s.Status != client.StatusSucceeded {
		t.Fatalf("saga: %v %v", s, err)
	}
}
