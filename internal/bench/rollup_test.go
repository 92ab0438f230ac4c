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
	for _, sync := range []bool{false, true} {
		name := "page-cache"
		if sync {
			name = "sync-always"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			srv, err := embedded.Start(ctx, embedded.Config{Dir: b.TempDir(), Port: -1, ServerName: "rollup", SyncAlways: sync})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(srv.Shutdown)
			_, js := natstest.Connect(b, srv.ClientURL())
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, AllowRollup: true, AllowMsgTTL: true}); err != nil {
				b.Fatal(err)
			}
			small, big := make([]byte, 200), make([]byte, 1100)
			for i := range small {
				small[i] = 'x'
			}
			for i := range big {
				big[i] = 'x'
			}
			log := func(b *testing.B, last *nats.Msg) {
				for b.Loop() {
					subj := "r." + uuid.NewString()
					for range 3 {
						if _, err := js.Publish(ctx, subj, small); err != nil {
							b.Fatal(err)
						}
					}
					last.Subject = subj
					if _, err := js.PublishMsg(ctx, last); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logs/s")
			}
			b.Run("plain-200B", func(b *testing.B) { log(b, &nats.Msg{Data: small}) })
			b.Run("plain-1100B", func(b *testing.B) { log(b, &nats.Msg{Data: big}) })
			b.Run("rollup-1100B", func(b *testing.B) {
				log(b, &nats.Msg{Data: big, Header: nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}})
			})
			b.Run("rollup-ttl-1100B", func(b *testing.B) {
				log(b, &nats.Msg{Data: big, Header: nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}, jetstream.MsgTTLHeader: []string{"1h"}}})
			})
		})
	}
}
