package natstest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

func TestMain(m *testing.M) { natstest.Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRunServer(t *testing.T) {
	t.Parallel()
	a, b := natstest.RunServer(t), natstest.RunServer(t)
	if a.ClientURL() == b.ClientURL() {
		t.Fatalf("two servers share %s", a.ClientURL())
	}
	if a.Config().Dir == b.Config().Dir {
		t.Fatalf("two servers share store %s", a.Config().Dir)
	}
	nc, js := natstest.Connect(t, a.ClientURL())
	if _, err := js.AccountInfo(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
}

func TestClusterSurvivesNodeRestart(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	ctx := testCtx(t)
	urls := c.URLs()
	if len(urls) != 3 || len(c.Servers) != 3 {
		t.Fatalf("URLs %v, %d servers", urls, len(c.Servers))
	}
	for i, s := range c.Servers {
		if name := s.NATS().Name(); name != fmt.Sprintf("n%d", i) {
			t.Errorf("node %d is named %q", i, name)
		}
	}
	_, js := natstest.Connect(t, c.URL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3}); err != nil {
		t.Fatalf("R3 stream right after RunCluster: %v", err)
	}
	if _, err := js.Publish(ctx, "r3", []byte("one")); err != nil {
		t.Fatal(err)
	}

	c.Shutdown(1)
	// Two of three nodes keep a quorum; the client may need a moment to
	// fail over if it was connected to node 1.
	natstest.Eventually(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(ctx, "r3", []byte("two"), jetstream.WithMsgID("two"))
		return err
	})

	c.Restart(1)
	if got := c.Servers[1].ClientURL(); got != urls[1] {
		t.Fatalf("node 1 came back on %s, was %s", got, urls[1])
	}
	if got := c.Servers[1].NATS().Name(); got != "n1" {
		t.Fatalf("node 1 came back as %q", got)
	}
	// The restarted node catches up: read both messages through it alone.
	_, js1 := natstest.Connect(t, urls[1])
	natstest.Eventually(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := js1.Stream(ctx, "R3")
		if err != nil {
			return err
		}
		if n := s.CachedInfo().State.Msgs; n != 2 {
			return fmt.Errorf("R3 has %d messages, want 2", n)
		}
		return nil
	})
}

func TestConnectToClusterURL(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	// A comma-separated list works like a cluster's URL.
	nc, _ := natstest.Connect(t, srv.ClientURL()+",nats://127.0.0.1:1")
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	if nc.Opts.MaxReconnect != -1 {
		t.Fatalf("MaxReconnect = %d, want -1", nc.Opts.MaxReconnect)
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	natstest.Eventually(t, 5*time.Second, func() error {
		if calls++; calls < 5 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 5 {
		t.Fatalf("f called %d times, want 5", calls)
	}

	ft := &fakeT{TB: t}
	begin := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		natstest.Eventually(ft, 50*time.Millisecond, func() error { return errors.New("never") })
	})
	wg.Wait()
	if d := time.Since(begin); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("Eventually gave up after %s, want about 50ms", d)
	}
	if !strings.Contains(ft.fatal, "never") || !strings.Contains(ft.fatal, "50ms") {
		t.Errorf("failure message %q does not give the last error and the timeout", ft.fatal)
	}
}

// fakeT records a Fatalf and ends the goroutine, like testing.T.
type fakeT struct {
	testing.TB
	fatal string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
