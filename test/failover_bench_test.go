package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// BenchmarkFailover measures the time from the death of a coordinator (its
// NATS connection closed, as when its process is killed) to the first event
// another coordinator appends for one of its sagas: the dead one's lease
// must expire (TTL), the survivor must notice (within TTL/3), take the
// partition, and handle the reply waiting there. Reported with the lease
// TTL, in ms; not a timed assertion.
//
//	go test -run XXX -bench Failover -benchtime 5x ./test/
func BenchmarkFailover(b *testing.B) {
	for _, ttl := range []time.Duration{2 * time.Second, 5 * time.Second} {
		b.Run("ttl="+ttl.String(), func(b *testing.B) {
			var samples []time.Duration
			for range b.N {
				samples = append(samples, failoverOnce(b, ttl))
			}
			slices.Sort(samples)
			b.ReportMetric(float64(samples[len(samples)/2].Milliseconds()), "failover-p50-ms")
			b.ReportMetric(float64(samples[len(samples)-1].Milliseconds()), "failover-max-ms")
			b.ReportMetric(float64(ttl.Milliseconds()), "lease-ttl-ms")
		})
	}
}

func failoverOnce(b *testing.B, ttl time.Duration) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	srv := natstest.RunServer(b)
	url := srv.ClientURL()
	nc, js := natstest.Connect(b, url)
	ctx := context.Background()
	start := func(name string) (*coordinator.Coordinator, *nats.Conn) {
		cnc, cjs := natstest.Connect(b, url)
		c, err := coordinator.New(cjs, coordinator.Config{Name: name, Topology: testTopo(), LeaseTTL: ttl})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Stop(context.Background()) })
		return c, cnc
	}
	victim, victimConn := start("victim")
	survivor, _ := start("survivor")
	natstest.Eventually(b, 30*time.Second, func() error {
		if len(owned(victim)) == 0 || len(owned(survivor)) == 0 {
			return fmt.Errorf("not shared yet")
		}
		return exactlyOnce(victim, survivor)
	})
	// A saga in one of the victim's partitions, waiting for a reply.
	mine := map[int]bool{}
	for _, p := range owned(victim) {
		mine[p] = true
	}
	id := uuid.NewString()
	for !mine[streams.Partition(id, testPartitions)] {
		id = uuid.NewString()
	}
	cl, err := client.New(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	def := saga.New("f").Then(saga.Action("a", "failover.a")).Then(saga.Action("b", "failover.b")).MustBuild()
	if _, err := cl.Start(ctx, def, nil, client.WithSagaID(id)); err != nil {
		b.Fatal(err)
	}
	reqID, req := waitRequest(b, js, "failover.a", id)
	// Kill the victim, then reply: the reply waits for the partition's
	// next owner.
	appended := make(chan time.Time, 1)
	sub, err := nc.Subscribe(streams.LogSubject(id), func(m *nats.Msg) {
		evs, err := events.DecodeLog(m.Subject[len("jetsaga.log."):], m.Data)
		if err == nil && strings.HasSuffix(evs[0].Source, "/survivor") {
			select {
			case appended <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	killed := time.Now()
	victimConn.Close()
	reply(b, js, id, reqID, req)
	select {
	case at := <-appended:
		return at.Sub(killed)
	case <-time.After(10 * ttl):
		b.Fatalf("no coordinator appended to saga %s within %s of the kill", id, 10*ttl)
	}
	return 0
}

// waitRequest reads the first request on action's subject for saga id.
func waitRequest(t testing.TB, js jetstream.JetStream, action, id string) (string, events.ActionRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, streams.WorkStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{streams.RequestSubject(action)}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("no request for saga %s: %v", id, err)
			}
			continue
		}
		ev, err := events.Decode(m.Data())
		if err == nil && ev.SagaID == id {
			return ev.ID, *ev.Data.(*events.ActionRequest)
		}
	}
}

// reply answers a request with success, as a participant would.
func reply(t testing.TB, js jetstream.JetStream, id, reqID string, req events.ActionRequest) {
	t.Helper()
	b, err := events.Encode(events.Event{ID: events.ReplyID(reqID), Source: "/test", SagaID: id,
		Data: &events.ActionReply{RequestID: reqID, Op: req.Op, Node: req.Node, Attempt: req.Attempt, OK: true, Output: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), req.ReplyTo, b); err != nil {
		t.Fatal(err)
	}
}
