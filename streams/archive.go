package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The archive: where finished sagas are kept for their retention.
//
// A saga's last decision is appended as a rollup (Log.AppendRollup) that
// restates its whole log; the coordinator then archives the same bytes in
// JETSAGA_ARCHIVE, whose age limit is the retention. So the server's
// per-subject state tracks the sagas in flight (and those finished within
// the dedupe window, until their rollup expires), never the history: the
// archive's subjects are ArchiveBuckets buckets, not one per saga. A
// finished saga is found by scanning its bucket from the time its id
// gives (UUID version 7 ids, which clients generate), or from the
// beginning (ids derived from idempotency keys, or chosen by the user).
const (
	// ArchiveStream holds finished sagas, one message each.
	ArchiveStream = "JETSAGA_ARCHIVE"
	// ArchiveBuckets is how many subjects the archive spreads sagas over:
	// a lookup reads one bucket, and the server keeps a few hundred bytes
	// per subject whatever the history.
	ArchiveBuckets = 4096

	archivePrefix   = "jetsaga.archive."
	archiveSubjects = archivePrefix + "*"

	// HeaderSaga names the saga an archive message holds.
	HeaderSaga = "Jetsaga-Saga"
	// HeaderSummary holds the finished saga's summary (JSON), so listing
	// the archive can read headers only.
	HeaderSummary = "Jetsaga-Summary"

	// clockSkew is how much earlier than its id's time a saga may have
	// been archived (the id is made by a client, the archive message
	// stamped by the server).
	clockSkew = time.Minute
)

// ArchiveSubject is the archive subject a saga is kept on:
// jetsaga.archive.<bucket>, the bucket being the id's FNV-1a hash modulo
// ArchiveBuckets (Partition).
func ArchiveSubject(sagaID string) string {
	return Namespace("").ArchiveSubject(sagaID)
}

// ArchiveMsg is the archive message of a finished saga: its rollup
// (events.EncodeRollup) and summary. A saga archived twice (its finish
// handled again after a lost answer) has two identical copies; readers
// take either. It carries no Nats-Msg-Id: the server would keep an
// entry per archived saga for the whole duplicate window (measured: 1M
// sagas archived within it, +119 MB of server heap), for copies that
// are rare and harmless.
func ArchiveMsg(sagaID string, rollup, summary []byte) *nats.Msg {
	return Namespace("").ArchiveMsg(sagaID, rollup, summary)
}

// ArchiveMsg is ArchiveMsg in namespace n.
func (n Namespace) ArchiveMsg(sagaID string, rollup, summary []byte) *nats.Msg {
	m := &nats.Msg{Subject: n.ArchiveSubject(sagaID), Data: rollup, Header: nats.Header{HeaderSaga: []string{sagaID}}}
	if len(summary) > 0 {
		m.Header[HeaderSummary] = []string{string(summary)}
	}
	return m
}

// Archive stores a finished saga's rollup and summary in the archive.
func (l *Log) Archive(ctx context.Context, sagaID string, rollup, summary []byte) error {
	if err := ValidateSagaID(sagaID); err != nil {
		return err
	}
	ctx, cancel := l.bound(ctx)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, l.ns.ArchiveMsg(sagaID, rollup, summary)); err != nil {
		return fmt.Errorf("streams: archive saga %s: %w", sagaID, err)
	}
	return nil
}

// Archived returns the archive message of sagaID (its rollup), or a
// *NotFoundError if the archive does not hold it.
//
// For a UUID version 7 id (clients make them) it looks from the id's time
// (a minute earlier, for clocks that disagree) and takes the first copy;
// if that finds nothing (a client clock far ahead), the whole bucket. For
// any other id it reads the whole bucket and takes the newest copy: an id
// derived from an idempotency key may name a second saga once the first
// left its dedupe window, and the newest is the one a reader means.
func (l *Log) Archived(ctx context.Context, sagaID string) (*Entry, error) {
	if err := ValidateSagaID(sagaID); err != nil {
		return nil, err
	}
	if at, ok := idTime(sagaID); ok {
		from := at.Add(-clockSkew)
		e, err := l.scanArchive(ctx, sagaID, &from, true)
		if !errors.Is(err, ErrNotFound) {
			return e, err
		}
	}
	return l.scanArchive(ctx, sagaID, nil, false)
}

// scanArchive reads sagaID's bucket from from (nil: its beginning) and
// returns its first copy (first) or its newest.
func (l *Log) scanArchive(ctx context.Context, sagaID string, from *time.Time, first bool) (*Entry, error) {
	subject := l.ns.ArchiveSubject(sagaID)
	sub, err := l.replies.open()
	if err != nil {
		return nil, fmt.Errorf("streams: read the archive: %w", err)
	}
	defer sub.close()
	req := directGetRequest{Seq: 1, NextFor: subject, Batch: readBatch, MaxBytes: readMaxBytes}
	if from != nil {
		req.Seq, req.StartTime = 0, from
	}
	var found *Entry
	for {
		var last uint64
		more, err := l.directGet(ctx, sub, l.ns.ArchiveStream(), req, func(m *nats.Msg) error {
			e, err := entryOf(m, subject)
			if err != nil {
				return err
			}
			last = e.Seq
			if m.Header.Get(HeaderSaga) == sagaID && (found == nil || !first) {
				e.Summary = []byte(m.Header.Get(HeaderSummary))
				found = &e
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("streams: look for saga %s in the archive: %w", sagaID, err)
		}
		if found != nil && first {
			return found, nil
		}
		if !more || last == 0 {
			if found != nil {
				return found, nil
			}
			return nil, &NotFoundError{SagaID: sagaID}
		}
		req = directGetRequest{Seq: last + 1, NextFor: subject, Batch: readBatch, MaxBytes: readMaxBytes}
	}
}

// Load returns a saga's log wherever it is: the live log (Read), or, once
// the saga has left it, its archived rollup as the one entry. A
// *NotFoundError if neither has it.
func (l *Log) Load(ctx context.Context, sagaID string) ([]Entry, error) {
	entries, err := l.Read(ctx, sagaID, 0)
	if !errors.Is(err, ErrNotFound) {
		return entries, err
	}
	e, err := l.Archived(ctx, sagaID)
	if err != nil {
		return nil, err
	}
	return []Entry{*e}, nil
}

// idTime is the time a version 7 UUID was made.
func idTime(id string) (time.Time, bool) {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return time.Time{}, false
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec), true
}

// ArchivedSummaries hands each finished saga's summary (JSON), archived
// since since (zero: all), to each, oldest first, until each returns
// false. It reads headers only (an ordered consumer), so its cost is the
// number of sagas, not their logs' size.
func (l *Log) ArchivedSummaries(ctx context.Context, since time.Time, each func(summary []byte) bool) error {
	s, err := l.js.Stream(ctx, l.ns.ArchiveStream())
	if err != nil {
		return fmt.Errorf("streams: list the archive: %w", err)
	}
	if st := s.CachedInfo().State; st.Msgs == 0 || !since.IsZero() && st.LastTime.Before(since) {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.ns.subject(archiveSubjects)}, HeadersOnly: true, DeliverPolicy: jetstream.DeliverAllPolicy,
		InactiveThreshold: 5 * time.Second}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("streams: list the archive: %w", err)
	}
	for {
		batch, err := c.Fetch(readBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("streams: list the archive: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("streams: list the archive: %w", err)
			}
			if !each([]byte(m.Headers().Get(HeaderSummary))) {
				return nil
			}
			if meta.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("streams: list the archive: %w", err)
		}
		if got == 0 {
			return nil // nothing since (or the stream is empty now)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// archivePage is how many archive messages ArchivedNewestFirst reads at a
// time.
const archivePage = 256

// ArchivedNewestFirst hands each archived saga's summary (JSON) and the
// time it was archived to each, newest first, until each returns false or
// the archive is exhausted. It reads the archive backwards a page at a
// time, so listing the newest sagas costs pages, not the whole history.
func (l *Log) ArchivedNewestFirst(ctx context.Context, each func(summary []byte, archived time.Time) bool) error {
	s, err := l.js.Stream(ctx, l.ns.ArchiveStream())
	if err != nil {
		return fmt.Errorf("streams: list the archive: %w", err)
	}
	st := s.CachedInfo().State
	sub, err := l.replies.open()
	if err != nil {
		return fmt.Errorf("streams: list the archive: %w", err)
	}
	defer sub.close()
	for hi := st.LastSeq; hi >= max(st.FirstSeq, 1) && hi > 0; {
		lo := max(st.FirstSeq, 1)
		if hi >= archivePage && hi-archivePage+1 > lo {
			lo = hi - archivePage + 1
		}
		var page []*nats.Msg
		req := directGetRequest{Seq: lo, NextFor: l.ns.subject(archiveSubjects), Batch: int(hi - lo + 1), MaxBytes: readMaxBytes}
		for {
			var last uint64
			more, err := l.directGet(ctx, sub, l.ns.ArchiveStream(), req, func(m *nats.Msg) error {
				seq, err := strconv.ParseUint(m.Header.Get(headerSequence), 10, 64)
				if err != nil {
					return fmt.Errorf("direct get: bad %s header: %w", headerSequence, err)
				}
				if last = seq; seq <= hi {
					page = append(page, m)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("streams: list the archive: %w", err)
			}
			if !more || last == 0 || last >= hi {
				break // a page larger than the byte bound comes in parts
			}
			req = directGetRequest{Seq: last + 1, NextFor: l.ns.subject(archiveSubjects), Batch: int(hi - last), MaxBytes: readMaxBytes}
		}
		for i := len(page) - 1; i >= 0; i-- {
			m := page[i]
			ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(headerTimeStamp))
			if err != nil {
				return fmt.Errorf("streams: list the archive: bad %s header: %w", headerTimeStamp, err)
			}
			if !each([]byte(m.Header.Get(HeaderSummary)), ts) {
				return nil
			}
		}
		if lo <= max(st.FirstSeq, 1) {
			return nil
		}
		hi = lo - 1
	}
	return nil
}
