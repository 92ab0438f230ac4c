package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// A reply that names a real outstanding request but is malformed (an
// error kind participants may not send; node or attempt not the
// request's) fails that attempt at once with what was wrong, visible in
// the saga's status, instead of leaving it to time out.
func TestMalformedReplyFailsItsAttemptAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	cons, err := e.js.CreateOrUpdateConsumer(ctx, streams.WorkStream, jetstream.ConsumerConfig{
		Durable: "bad-replies", FilterSubject: "jetsaga.req.bad.>", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Decode(m.Data())
		if err != nil {
			t.Errorf("request: %v", err)
			return
		}
		req := ev.Data.(*events.ActionRequest)
		var data string
		switch req.Action {
		case "bad.kind": // "timeout" is not a kind participants send
			data = fmt.Sprintf(`{"request_id":%q,"op":"do","node":%q,"attempt":%d,"ok":false,"error":{"kind":"timeout","message":"slow"}}`, ev.ID, req.Node, req.Attempt)
		case "bad.attempt": // well-formed, but not the request's attempt
			data = fmt.Sprintf(`{"request_id":%q,"op":"do","node":%q,"attempt":%d,"ok":true,"output":1}`, ev.ID, req.Node, req.Attempt+7)
		}
		body := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/test/bad","type":"io.jetsaga.action.reply.v1","subject":%q,"datacontenttype":"application/json","data":%s}`,
			events.ReplyID(ev.ID), ev.SagaID, data)
		msg := nats.NewMsg(req.ReplyTo)
		msg.Data = []byte(body)
		if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
			t.Errorf("reply: %v", err)
		}
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	for _, c := range []struct{ action, want string }{
		{"bad.kind", `malformed reply`},
		{"bad.attempt", `are not those of the request it names`},
	} {
		// One attempt, and an attempt timeout of a minute: an unwound saga
		// within the test's wait means the reply failed the attempt.
		def := saga.New("bad").Then(saga.Action("a", c.action).Retry(saga.RetryPolicy{MaxAttempts: 1}).Timeout(time.Minute)).MustBuild()
		id, err := e.cl.Start(ctx, def, nil)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		s, err := e.cl.WaitFor(wctx, id, func(s *client.Saga) bool { return s.Finished() })
		cancel()
		if err != nil {
			t.Fatalf("%s: the saga did not end at once: %v", c.action, err)
		}
		n, _ := s.Node("a")
		if s.Status != client.StatusUnwound || n.Error == nil || !strings.Contains(n.Error.Message, c.want) {
			t.Fatalf("%s: saga %s, node a %+v", c.action, s.Status, n.Error)
		}
	}
}
