package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names used on log messages and in the server's answers.
const (
	headerExpectLastSub = jetstream.ExpectedLastSubjSeqHeader
	headerSequence      = jetstream.SequenceHeader
	headerTimeStamp     = jetstream.TimeStampHeaer // sic: nats.go's spelling
	headerSubject       = jetstream.SubjectHeader
	headerNumPending    = "Nats-Num-Pending" // in a batched direct get's EOB
	headerStatus        = "Status"           // a status message's code
	headerDescription   = "Description"      // and its text
)

// Error codes of the server's answers that Append acts on
// (nats-server errors.json; nats.go jetstream/errors.go).
const (
	// codeWrongLastSeq: the subject's last sequence is not the expected one.
	codeWrongLastSeq = jetstream.JSErrCodeStreamWrongLastSequence // 10071
	// codeWrongLastSeqConstant: same, on a replicated stream, when another
	// write to the subject is still being replicated.
	codeWrongLastSeqConstant = jetstream.JSErrCodeStreamWrongLastSequenceConstant // 10164
	// codeMessageNotFound: a message get found nothing.
	codeMessageNotFound = jetstream.JSErrCodeMessageNotFound // 10037
)

const (
	// readBatch is how many messages one batched direct get asks for.
	readBatch = 256
	// readMaxBytes bounds the bytes of one batch, well under the client's
	// default pending limit for a subscription (64 MiB), so a page of
	// large messages cannot make the reader a slow consumer.
	readMaxBytes = 8 << 20
	// replicatingWait is how long Append waits before asking again when
	// another append to the saga is still being replicated.
	replicatingWait = 20 * time.Millisecond
)

// Entry is one message of a saga's log.
type Entry struct {
	// Seq is the message's sequence in JETSAGA_LOG; entries of one saga
	// have increasing, not consecutive, sequences.
	Seq  uint64
	Data []byte
	// Time is when the server stored the message.
	Time time.Time
	// Summary is an archive message's summary (JSON; Log.Archived).
	Summary []byte
}

// Log appends to and reads sagas' logs in JETSAGA_LOG. It is safe for
// concurrent use and holds no per-saga state.
type Log struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	api     string        // JetStream API prefix, ending in "."
	timeout time.Duration // bound for calls whose ctx has no deadline
	replies *replies      // the answers to direct gets, per connection
	ns      Namespace
}

// NewLog returns a Log using js (and its connection). The topology must
// have been applied (see Apply).
func NewLog(js jetstream.JetStream) *Log { return NewLogIn(js, "") }

// Namespace is the namespace whose sagas l reads and writes.
func (l *Log) Namespace() Namespace { return l.ns }

// NewLogIn is NewLog for the sagas of namespace ns.
func NewLogIn(js jetstream.JetStream, ns Namespace) *Log {
	opts := js.Options()
	api := jetstream.DefaultAPIPrefix
	switch {
	case opts.APIPrefix != "":
		api = opts.APIPrefix
		if !strings.HasSuffix(api, ".") {
			api += "."
		}
	case opts.Domain != "":
		api = "$JS." + opts.Domain + ".API."
	}
	timeout := opts.DefaultTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Log{js: js, nc: js.Conn(), api: api, timeout: timeout, replies: repliesFor(js.Conn()), ns: ns}
}

// Derive returns a JetStream context on js's connection, domain and API
// prefix, with opts (a writer's own async publishing limits, say).
func Derive(js jetstream.JetStream, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	return DeriveOn(js, js.Conn(), opts...)
}

// DeriveOn is Derive on another connection nc (to the same account).
func DeriveOn(js jetstream.JetStream, nc *nats.Conn, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	if o := js.Options(); o.Domain != "" {
		return jetstream.NewWithDomain(nc, o.Domain, opts...)
	} else if o.APIPrefix != "" {
		return jetstream.NewWithAPIPrefix(nc, o.APIPrefix, opts...)
	}
	return jetstream.New(nc, opts...)
}

// StallWait is how long an asynchronous publish waits for room when the
// context's limit of unacknowledged publishes is reached: a writer that
// outruns the server slows down rather than failing.
const StallWait = 10 * time.Second

// Append appends data to the log of sagaID if, and only if, the log's last
// message has sequence expectedLastSeq (0: the log must be empty, so the
// first append creates the saga exactly once). It returns the new message's
// sequence, the next expectedLastSeq.
//
// If the log has moved on, Append returns a *ConflictError (errors.Is
// ErrConflict) — unless the message after expectedLastSeq holds this very
// data, stored by an earlier attempt whose answer was lost: then Append
// returns that message's sequence and writes nothing. So an Append that
// failed for any other reason (a timeout, a connection loss) can simply be
// retried with the same arguments.
//
// The message carries no Nats-Msg-Id: the expected sequence already makes
// a retried append land at most once, and the server's duplicate tracking
// would cost memory per append for its whole window. Two writers cannot
// both append after the same message: the server checks the expected
// sequence against appends still being replicated too.
func (l *Log) Append(ctx context.Context, sagaID string, expectedLastSeq uint64, data []byte) (uint64, error) {
	return l.append(ctx, sagaID, expectedLastSeq, data, nil)
}

// AppendRollup appends a saga's last decision like Append, as a rollup:
// data restates the whole log (events.EncodeRollup), the stream drops the
// messages before it, and the message itself expires after r.TTL.
func (l *Log) AppendRollup(ctx context.Context, sagaID string, expectedLastSeq uint64, data []byte, r Rollup) (uint64, error) {
	return l.append(ctx, sagaID, expectedLastSeq, data, &r)
}

// Rollup makes an append a saga's last (AppendRollup, AppendAsync).
type Rollup struct {
	// TTL is how long the finished saga stays on its subject, where a
	// start for the same id finds it (the dedupe window); 0 keeps it until
	// an operator purges it. The saga is archived (Archive) either way.
	TTL time.Duration
}

func (l *Log) append(ctx context.Context, sagaID string, expectedLastSeq uint64, data []byte, r *Rollup) (uint64, error) {
	if err := ValidateSagaID(sagaID); err != nil {
		return 0, err
	}
	ctx, cancel := l.bound(ctx)
	defer cancel()
	msg := l.appendMsg(sagaID, expectedLastSeq, data, r)
	for {
		ack, err := l.js.PublishMsg(ctx, msg)
		if err == nil {
			return ack.Sequence, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != codeWrongLastSeq && apiErr.ErrorCode != codeWrongLastSeqConstant {
			return 0, fmt.Errorf("streams: append to saga %s: %w", sagaID, err)
		}
		// A retry of an append that succeeded lands here: see whether
		// the next message is ours.
		seq, found, lookErr := l.ours(ctx, sagaID, expectedLastSeq, data)
		switch {
		case lookErr != nil:
			return 0, fmt.Errorf("streams: append to saga %s: conflict at %d, and checking whether an earlier attempt succeeded failed (retry the append): %w",
				sagaID, expectedLastSeq, lookErr)
		case found == ours:
			return seq, nil
		case found == none && apiErr.ErrorCode == codeWrongLastSeqConstant:
			// Another append to the subject is still being replicated
			// (perhaps an earlier attempt of this one): ask again once
			// it is stored or gone.
			t := time.NewTimer(replicatingWait)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, fmt.Errorf("streams: append to saga %s: waiting for an append being replicated: %w", sagaID, ctx.Err())
			case <-t.C:
			}
			continue
		}
		return 0, &ConflictError{SagaID: sagaID, Expected: expectedLastSeq, err: err}
	}
}

// appendMsg is the message Append publishes: data on the saga's subject,
// with the one header that makes it conditional (and, for a rollup, the
// two that make the stream keep only it, for a while).
func (l *Log) appendMsg(sagaID string, expectedLastSeq uint64, data []byte, r *Rollup) *nats.Msg {
	m := &nats.Msg{Subject: l.ns.LogSubject(sagaID), Data: data,
		Header: nats.Header{headerExpectLastSub: []string{strconv.FormatUint(expectedLastSeq, 10)}}}
	if r != nil {
		m.Header[jetstream.MsgRollup] = []string{jetstream.MsgRollupSubject}
		if r.TTL > 0 {
			m.Header[jetstream.MsgTTLHeader] = []string{max(r.TTL, time.Second).Round(time.Second).String()}
		}
	}
	return m
}

// AppendAsync starts an append like Append and returns without waiting
// for the server: for a writer that keeps several sagas' appends in flight
// at once. Pass the future's outcome to AppendResult. Unlike Append, it
// does not retry: a lost answer leaves the caller to read the log again.
// A non-nil r makes it a rollup (AppendRollup).
func (l *Log) AppendAsync(sagaID string, expectedLastSeq uint64, data []byte, r *Rollup) (jetstream.PubAckFuture, error) {
	if err := ValidateSagaID(sagaID); err != nil {
		return nil, err
	}
	f, err := l.js.PublishMsgAsync(l.appendMsg(sagaID, expectedLastSeq, data, r), jetstream.WithStallWait(StallWait))
	if err != nil {
		return nil, fmt.Errorf("streams: append to saga %s: %w", sagaID, err)
	}
	return f, nil
}

// AppendResult waits for an AppendAsync's future (at most timeout) and
// returns the stored message's sequence, a *ConflictError if the log had
// moved on, or another error (the append may or may not have happened).
func AppendResult(f jetstream.PubAckFuture, sagaID string, expectedLastSeq uint64, timeout time.Duration) (uint64, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err := <-f.Err():
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == codeWrongLastSeq || apiErr.ErrorCode == codeWrongLastSeqConstant) {
			return 0, &ConflictError{SagaID: sagaID, Expected: expectedLastSeq, err: err}
		}
		return 0, fmt.Errorf("streams: append to saga %s: %w", sagaID, err)
	case <-t.C:
		return 0, fmt.Errorf("streams: append to saga %s: no answer within %s", sagaID, timeout)
	}
}

// What ours found after a position.
const (
	none   = iota // no message yet
	theirs        // another writer's
	ours          // this data
)

// ours looks at the first message of the saga's log after afterSeq and
// reports whether it holds data. Two different decisions never encode
// the same: each names its writer, epoch and time.
func (l *Log) ours(ctx context.Context, sagaID string, afterSeq uint64, data []byte) (uint64, int, error) {
	m, err := l.getMsg(ctx, msgGetRequest{Seq: afterSeq + 1, NextFor: l.ns.LogSubject(sagaID)})
	switch {
	case err != nil:
		return 0, none, err
	case m == nil:
		return 0, none, nil
	case string(m.Data) != string(data):
		return 0, theirs, nil
	}
	return m.Sequence, ours, nil
}

// Last returns the sequence of the last message in the log of sagaID, or 0
// if it has none. It asks the stream's leader, so after an Append returned
// seq, Last returns at least seq.
func (l *Log) Last(ctx context.Context, sagaID string) (uint64, error) {
	if err := ValidateSagaID(sagaID); err != nil {
		return 0, err
	}
	ctx, cancel := l.bound(ctx)
	defer cancel()
	m, err := l.getMsg(ctx, msgGetRequest{LastFor: l.ns.LogSubject(sagaID)})
	if err != nil {
		return 0, fmt.Errorf("streams: last of saga %s: %w", sagaID, err)
	}
	if m == nil {
		return 0, nil
	}
	return m.Sequence, nil
}

// First returns the first message of the log of sagaID (the one holding
// saga.created), or nil if the saga has no log. Like Last, it asks the
// stream's leader, so it sees every acknowledged append.
func (l *Log) First(ctx context.Context, sagaID string) (*Entry, error) {
	if err := ValidateSagaID(sagaID); err != nil {
		return nil, err
	}
	ctx, cancel := l.bound(ctx)
	defer cancel()
	m, err := l.getMsg(ctx, msgGetRequest{Seq: 1, NextFor: l.ns.LogSubject(sagaID)})
	if err != nil {
		return nil, fmt.Errorf("streams: first of saga %s: %w", sagaID, err)
	}
	if m == nil {
		return nil, nil
	}
	return &Entry{Seq: m.Sequence, Data: m.Data}, nil
}

// Delete removes the whole log of sagaID (a finished saga past its
// retention). Deleting a log that is gone is not an error.
func (l *Log) Delete(ctx context.Context, sagaID string) error {
	if err := ValidateSagaID(sagaID); err != nil {
		return err
	}
	ctx, cancel := l.bound(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, l.ns.LogStream())
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(l.ns.LogSubject(sagaID)))
	}
	if err != nil {
		return fmt.Errorf("streams: delete the log of saga %s: %w", sagaID, err)
	}
	return nil
}

// Read returns the messages of the log of sagaID with sequence greater than
// afterSeq, in order. If the saga has no log at all and afterSeq is 0, it
// returns a *NotFoundError (errors.Is ErrNotFound); past the end of a log
// it returns no entries and no error.
//
// Read uses batched direct gets, which need no consumer. On a replicated
// stream they may be served by a follower a few milliseconds behind the
// leader, so the newest messages may be missing; an Append based on such a
// read fails with a conflict, never silently.
func (l *Log) Read(ctx context.Context, sagaID string, afterSeq uint64) ([]Entry, error) {
	if err := ValidateSagaID(sagaID); err != nil {
		return nil, err
	}
	subject := l.ns.LogSubject(sagaID)
	sub, err := l.replies.open()
	if err != nil {
		return nil, fmt.Errorf("streams: read saga %s: %w", sagaID, err)
	}
	defer sub.close()

	var entries []Entry
	next := afterSeq + 1
	for {
		more, err := l.readPage(ctx, sub, subject, next, &entries)
		if err != nil {
			return nil, fmt.Errorf("streams: read saga %s: %w", sagaID, err)
		}
		if !more {
			break
		}
		next = entries[len(entries)-1].Seq + 1
	}
	if len(entries) == 0 && afterSeq == 0 {
		return nil, &NotFoundError{SagaID: sagaID}
	}
	return entries, nil
}

// directGetRequest is a batched direct get (ADR-31; nats-server's
// JSApiMsgGetRequest).
type directGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	NextFor   string     `json:"next_by_subj"`
	Batch     int        `json:"batch"`
	MaxBytes  int        `json:"max_bytes"`
}

// readPage asks for one batch starting at seq and appends what comes back
// to entries.
func (l *Log) readPage(ctx context.Context, sub *slot, subject string, seq uint64, entries *[]Entry) (bool, error) {
	return l.directGet(ctx, sub, l.ns.LogStream(), directGetRequest{Seq: seq, NextFor: subject, Batch: readBatch, MaxBytes: readMaxBytes}, func(m *nats.Msg) error {
		e, err := entryOf(m, subject)
		if err == nil {
			*entries = append(*entries, e)
		}
		return err
	})
}

// directGet asks stream for one batch and hands each message to each. The
// server answers a batch with the messages (each carrying Nats-Sequence,
// Nats-Time-Stamp, Nats-Subject...) then a "204 EOB" status message whose
// Nats-Num-Pending says how many matching messages are left; when nothing
// matches it answers with a single "404" status message. directGet
// reports whether more messages remain.
func (l *Log) directGet(ctx context.Context, sub *slot, stream string, req directGetRequest, each func(*nats.Msg) error) (bool, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return false, err
	}
	ctx, cancel := l.bound(ctx)
	defer cancel()
	getSubject := l.api + "DIRECT.GET." + stream
	if err := l.nc.PublishRequest(getSubject, sub.subject, body); err != nil {
		return false, err
	}
	got := 0
	for {
		m, err := sub.next(ctx)
		if err != nil {
			return false, err
		}
		// Status messages carry no payload and, unlike stored messages,
		// no Nats-Sequence.
		if status := m.Header.Get(headerStatus); status != "" && len(m.Data) == 0 && m.Header.Get(headerSequence) == "" {
			switch status {
			case "204": // end of batch
				if got == 0 {
					return false, nil
				}
				pending, err := strconv.ParseUint(m.Header.Get(headerNumPending), 10, 64)
				if err != nil {
					return false, fmt.Errorf("direct get: end of batch without a valid %s header: %w", headerNumPending, err)
				}
				return pending > 0, nil
			case "404": // nothing (more) after seq
				return false, nil
			case "503":
				return false, fmt.Errorf("direct get on %s: %w (is the topology applied?)", getSubject, nats.ErrNoResponders)
			default:
				return false, fmt.Errorf("direct get on %s: status %s %s", getSubject, status, m.Header.Get(headerDescription))
			}
		}
		if err := each(m); err != nil {
			return false, err
		}
		got++
	}
}

func entryOf(m *nats.Msg, subject string) (Entry, error) {
	if s := m.Header.Get(headerSubject); s != subject {
		return Entry{}, fmt.Errorf("direct get: got a message of subject %q, asked for %q", s, subject)
	}
	seq, err := strconv.ParseUint(m.Header.Get(headerSequence), 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("direct get: bad %s header: %w", headerSequence, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(headerTimeStamp))
	if err != nil {
		return Entry{}, fmt.Errorf("direct get: bad %s header: %w", headerTimeStamp, err)
	}
	return Entry{Seq: seq, Data: m.Data, Time: ts}, nil
}

// msgGetRequest is a stream message get (nats-server's JSApiMsgGetRequest).
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

type storedMsg struct {
	Subject  string
	Sequence uint64
	Header   nats.Header
	Data     []byte
}

// getMsg gets one message through $JS.API.STREAM.MSG.GET, which — unlike a
// direct get — only the stream's leader answers, so it sees every
// acknowledged write. It returns nil, nil when there is no such message.
func (l *Log) getMsg(ctx context.Context, req msgGetRequest) (*storedMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := l.nc.RequestWithContext(ctx, l.api+"STREAM.MSG.GET."+l.ns.LogStream(), body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject  string `json:"subject"`
			Sequence uint64 `json:"seq"`
			Header   []byte `json:"hdrs"`
			Data     []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("message get: %w", err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == codeMessageNotFound {
			return nil, nil
		}
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, errors.New("message get: empty answer")
	}
	m := &storedMsg{Subject: r.Message.Subject, Sequence: r.Message.Sequence, Data: r.Message.Data}
	if len(r.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return nil, fmt.Errorf("message get: %w", err)
		}
	}
	return m, nil
}

// bound gives ctx the JetStream default timeout if it has no deadline, as
// nats.go does for its own calls.
func (l *Log) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.timeout)
}
