package coordinator

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/streams"
)

// The seams below are what a partition needs of the world, and nothing
// more. They are defined here, by their user: JetStream implements them in
// production (jsLog over *streams.Log, *index.Index, jsPublisher, wallClock), and the
// deterministic simulation in this package's tests implements them in
// memory, under one seeded scheduler and virtual time.
//
// Every method that waits on the network takes a context and is called
// only inside an I/O operation (partition.io), never on a partition's
// goroutine: the partition decides, the operation runs elsewhere, and its
// result comes back to the partition as an input.

// sagaLog is the sagas' logs.
type sagaLog interface {
	// Read returns the saga's log after afterSeq; streams.ErrNotFound if
	// the saga has none.
	Read(ctx context.Context, sagaID string, afterSeq uint64) ([]streams.Entry, error)
	// Append appends data if the log's last message is expected and
	// returns the new message's sequence: streams.ErrConflict if the log
	// has moved on; any other error leaves it unknown whether it happened.
	// A non-nil rollup makes it the saga's last: data restates the whole
	// log, which it replaces, and expires after rollup.TTL.
	Append(ctx context.Context, sagaID string, expected uint64, data []byte, rollup *streams.Rollup) (uint64, error)
	// Delete removes the saga's log.
	Delete(ctx context.Context, sagaID string) error
	// Archive keeps a finished saga's rollup and summary for the
	// retention (a second copy of the same saga is harmless).
	Archive(ctx context.Context, sagaID string, rollup, summary []byte) error
	// Archived returns the saga's archived rollup; streams.ErrNotFound
	// if the archive does not have it.
	Archived(ctx context.Context, sagaID string) (*streams.Entry, error)
}

// sagaIndex is the index of sagas in flight: a marker per saga, holding
// its summary.
type sagaIndex interface {
	MarkInFlight(ctx context.Context, s index.Summary) error
	ClearInFlight(ctx context.Context, partition int, sagaID string) error
	// InFlight lists the partition's markers, with their summaries.
	InFlight(ctx context.Context, partition int) ([]index.Summary, error)
	// Forget removes a summary kept by releases before the archive.
	Forget(ctx context.Context, sagaID string) error
}

// definitions stores what sagas are created from, content-addressed
// (*defs.Store).
type definitions interface {
	// Put makes sure the definition and defaults c refers to are stored.
	Put(ctx context.Context, c *events.SagaCreated) error
	// Resolve fills c's definition and defaults from the stored documents
	// its references name.
	Resolve(ctx context.Context, c *events.SagaCreated) error
}

// publisher stores a message in a stream (an action request, a timer's
// schedule) and returns once it is stored.
type publisher interface {
	Publish(ctx context.Context, m *nats.Msg) error
}

// clock tells the time and runs f after d (on a goroutine of its own in
// production; f only hands an input to the partition).
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) stopper
}

// stopper stops a timer; *time.Timer is one.
type stopper interface{ Stop() bool }

// delivery is a message consumed from a stream, settled once handled:
// a jetstream.Msg in production.
type delivery interface {
	Subject() string
	Data() []byte
	Ack() error
	Nak() error
	NakWithDelay(delay time.Duration) error
	Term() error
}

// env is a partition's world: its seams, whether it may write (its lease),
// and how it runs I/O.
type env struct {
	log   sagaLog
	index sagaIndex
	defs  definitions
	pub   publisher
	clock clock
	// owns reports whether the partition's lease can still be trusted.
	owns func() bool
	// io runs op off the partition's goroutine and hands its result back
	// to the partition (production: an owned goroutine and the partition's
	// results channel; the simulation: its scheduler).
	io func(op func(ctx context.Context) input)
}

// The production seams write with JetStream's asynchronous publish and
// await the acknowledgement in the operation (as *index.Index does): a
// publish over a connection that is reconnecting, or to a stream electing
// a leader, then fails with its future (or the operation's deadline)
// instead of a synchronous request's retries, and the partition decides
// what to do.

// jsLog is the saga logs on JetStream.
type jsLog struct {
	*streams.Log
	js jetstream.JetStream // the archive's writes, asynchronous
}

func (l jsLog) Append(ctx context.Context, id string, expected uint64, data []byte, rollup *streams.Rollup) (uint64, error) {
	f, err := l.AppendAsync(id, expected, data, rollup)
	if err != nil {
		return 0, err
	}
	return streams.AppendResult(f, id, expected, timeLeft(ctx))
}

func (l jsLog) Archive(ctx context.Context, id string, rollup, summary []byte) error {
	return await(ctx, func() (jetstream.PubAckFuture, error) {
		return l.js.PublishMsgAsync(l.Namespace().ArchiveMsg(id, rollup, summary), jetstream.WithStallWait(streams.StallWait))
	})
}

// jsPublisher publishes with JetStream.
type jsPublisher struct{ js jetstream.JetStream }

func (p jsPublisher) Publish(ctx context.Context, m *nats.Msg) error {
	return await(ctx, func() (jetstream.PubAckFuture, error) {
		return p.js.PublishMsgAsync(m, jetstream.WithStallWait(streams.StallWait))
	})
}

// await publishes and waits for the acknowledgement or ctx.
func await(ctx context.Context, publish func() (jetstream.PubAckFuture, error)) error {
	f, err := publish()
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timeLeft is what remains of ctx's deadline (a second without one).
func timeLeft(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), 0)
	}
	return time.Second
}

// wallClock is the real clock.
type wallClock struct{}

func (wallClock) Now() time.Time                              { return time.Now() }
func (wallClock) AfterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }
