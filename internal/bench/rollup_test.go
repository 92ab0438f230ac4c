package bench

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

// BenchmarkLastAppend measures what a saga's last append costs the server
// as a rollup (Nats-Rollup: sub and Nats-TTL, restating the log) against a
// plain append: a 4-message log per op, one at a time, on a file stream
// with the default sync and with fsync before every acknowledgement. Run:
// go test -run XXX -bench LastAppend ./internal/bench/
func BenchmarkLastAppend(b *testing.B) {
	small, big := make([]byte, 200), make([]byte, 1100)
	for i := range small {
		small[i] = 'x'
	}
	for i := range big {
		big[i] = 'x'
	}
	rollup := nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}
	ttl := nats.Header{jetstream.MsgTTLHeader: []string{"1h"}}
	both := nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}, jetstream.MsgTTLHeader: []string{"1h"}}
	lasts := []struct {
		name string
		msg  nats.Msg
	}{
		{"plain-200B", nats.Msg{Data: small}},
		{"plain-1100B", nats.Msg{Data: big}},
		{"ttl-1100B", nats.Msg{Data: big, Header: ttl}},
		{"rollup-1100B", nats.Msg{Data: big, Header: rollup}},
		{"rollup-ttl-1100B", nats.Msg{Data: big, Header: both}},
	}
	for _, sync := range []bool{false, true} {
		mode := "page-cache"
		if sync {
			mode = "sync-always"
		}
		for _, last := range lasts {
			// A server each, so no variant runs on a stream the others
			// filled.
			b.Run(mode+"/"+last.name, func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				srv, err := embedded.Start(ctx, embedded.Config{Dir: b.TempDir(), Port: -1, ServerName: "rollup", SyncAlways: sync})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Shutdown()
				nc, js := natstest.Connect(b, srv.ClientURL())
				defer nc.Close()
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, AllowRollup: true, AllowMsgTTL: true}); err != nil {
					b.Fatal(err)
				}
				m := last.msg
				for b.Loop() {
					subj := "r." + uuid.NewString()
					for range 3 {
						if _, err := js.Publish(ctx, subj, small); err != nil {
							b.Fatal(err)
						}
					}
					m.Subject = subj
					if _, err := js.PublishMsg(ctx, &m); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logs/s")
			})
		}
	}
}
