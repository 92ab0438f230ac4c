package bench

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/embedded"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

// BenchmarkSyncAlwaysWrites asks whether writes of several sagas can share
// one fsync on a single server with fsync before every acknowledgement
// (issue 13, §6): 100-byte messages, each on a subject of its own (as each
// saga's log is), into an R1 file stream,
//
//   - one at a time (a synchronous publish waits for its fsync);
//   - 256 outstanding (asynchronous publishes: if the server wrote several
//     before one fsync, this would be many times faster);
//   - in atomic batches of 16 (Nats-Batch-Id: one commit for 16).
//
// It reports messages/s. Run: go test -run XXX -bench SyncAlwaysWrites
// ./internal/bench/ (docs/performance.md has the figures).
func BenchmarkSyncAlwaysWrites(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: b.TempDir(), Port: -1, ServerName: "fsync", SyncAlways: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	_, js := natstest.Connect(b, srv.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FSYNC", Subjects: []string{"fsync.>"}, AllowAtomicPublish: true}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 100)
	subject := func() string { return "fsync." + uuid.NewString() }

	b.Run("one-at-a-time", func(b *testing.B) {
		for b.Loop() {
			if _, err := js.Publish(ctx, subject(), data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("256-outstanding", func(b *testing.B) {
		ajs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(256))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := ajs.PublishAsync(subject(), data); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-ajs.PublishAsyncComplete():
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("atomic-batches-of-16", func(b *testing.B) {
		const size = 16
		nc := js.Conn()
		n := 0
		for b.Loop() {
			id := uuid.NewString()
			for i := 1; i <= size; i++ {
				m := nats.NewMsg(subject())
				m.Data = data
				m.Header.Set("Nats-Batch-Id", id)
				m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
				if i < size {
					if err := nc.PublishMsg(m); err != nil {
						b.Fatal(err)
					}
					continue
				}
				m.Header.Set("Nats-Batch-Commit", "1")
				reply, err := nc.RequestMsg(m, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if len(reply.Data) == 0 || reply.Data[0] != '{' || string(reply.Data[:min(9, len(reply.Data))]) == `{"error":` {
					b.Fatalf("batch commit: %s", reply.Data)
				}
			}
			n += size
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	})
}
