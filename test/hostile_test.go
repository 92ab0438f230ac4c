package test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// Malformed, forged, stale and misrouted replies are rejected with a reason
// and counted; the saga is unaffected.
func TestBadRepliesAreRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	var once sync.Once
	var flightReq events.ActionRequest
	var flightID string
	startRaw(t, e.js, func(req events.ActionRequest) (any, *events.Error, bool) {
		if req.Node == "hotel" && req.Op == events.OpDo {
			<-release
		}
		if req.Node == "flight" {
			once.Do(func() { flightReq = req })
		}
		return succeedAll(req)
	})
	ctx := ctxT(t)
	id, err := e.cl.Start(ctx, trip(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.WaitFor(ctx, id, func(s *client.Saga) bool { n, _ := s.Node("car"); return n.State == "succeeded" }); err != nil {
		t.Fatal(err)
	}
	flightID = events.RequestID(id, "flight", events.OpDo, flightReq.Attempt)
	p := streams.Partition(id, testPartitions)
	replySubj := streams.ReplySubject(p)
	reply := func(evID, sagaID string, r events.ActionReply) []byte {
		b, err := events.Encode(events.Event{ID: evID, Source: "/attacker", SagaID: sagaID, Data: &r})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	other := uuid.NewString()
	for streams.Partition(other, testPartitions) == p {
		other = uuid.NewString()
	}
	hotelID := events.RequestID(id, "hotel", events.OpDo, 1)
	bad := map[string][]byte{
		"garbage":     []byte("\x00\xffnot json"),
		"huge-ish":    make([]byte, 100_000),
		"not a reply": []byte(`{"specversion":"1.0","id":"x","source":"/a","type":"io.jetsaga.node.succeeded.v1","subject":"` + id + `","data":{"node":"hotel","attempt":1}}`),
		// A success for hotel, but naming a request that was never sent.
		"forged": reply(events.ReplyID("forged"), id, events.ActionReply{RequestID: "forged", Op: events.OpDo, Node: "hotel", Attempt: 1, OK: true}),
		// The reply id does not answer the request it names.
		"mismatched id": reply("whatever", id, events.ActionReply{RequestID: hotelID, Op: events.OpDo, Node: "hotel", Attempt: 1, OK: true}),
		// A replay of flight's success, long after it was applied.
		"stale": reply(events.ReplyID(flightID)+"-again", id, events.ActionReply{RequestID: flightID, Op: events.OpDo, Node: "flight", Attempt: 1, OK: true}),
		// A saga of another partition on this partition's subject.
		"misrouted": reply(events.ReplyID("r"), other, events.ActionReply{RequestID: "r", Op: events.OpDo, Node: "hotel", Attempt: 1, OK: true}),
		// A saga that does not exist, on the right partition.
		"unknown saga": func() []byte {
			u := uuid.NewString()
			for streams.Partition(u, testPartitions) != p {
				u = uuid.NewString()
			}
			rid := events.RequestID(u, "hotel", events.OpDo, 1)
			return reply(events.ReplyID(rid), u, events.ActionReply{RequestID: rid, Op: events.OpDo, Node: "hotel", Attempt: 1, OK: true})
		}(),
	}
	before := e.coord.Status().Rejected
	for name, b := range bad {
		if _, err := e.js.Publish(ctx, replySubj, b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if got := e.coord.Status().Rejected - before; got < int64(len(bad)) {
			return fmt.Errorf("%d of %d bad replies rejected", got, len(bad))
		}
		return nil
	})
	s, err := e.cl.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if hotel, _ := s.Node("hotel"); hotel.State != "started" || s.Status != client.StatusRunning {
		t.Fatalf("bad replies changed the saga: %s, hotel %s", s.Status, hotel.State)
	}
	close(release)
	if s := e.wait(id); s.Status != client.StatusSucceeded {
		t.Fatalf("status %s", s.Status)
	}
}
