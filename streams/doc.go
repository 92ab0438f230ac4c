// Package streams owns jetsaga's JetStream topology — every stream, bucket
// and subject — and the saga log's reads and writes. It deals in raw bytes:
// what the bytes mean is package events' business.
//
//	if err := streams.Apply(ctx, js, streams.Config{Replicas: 3}); err != nil {
//		return err // names every missing or incompatible resource
//	}
//	log := streams.NewLog(js)
//	seq, err := log.Append(ctx, sagaID, 0, firstMessage)
//	if errors.Is(err, streams.ErrConflict) {
//		// another writer got there first: re-read and decide again
//	}
//	entries, err := log.Read(ctx, sagaID, 0)
//
// # Topology
//
// Declare lists every resource in one place; Apply creates what is missing
// at startup and Verify checks without creating. Nothing else in jetsaga
// creates streams or buckets, and nothing here runs on a hot path.
//
//	JETSAGA_LOG     jetsaga.log.*              limits, direct get, deny delete, rollups, message TTLs
//	JETSAGA_ARCHIVE jetsaga.archive.*          finished sagas in 4096 buckets, MaxAge = retention
//	JETSAGA_WORK    jetsaga.req.>              action requests
//	                jetsaga.reply.*            participant replies, per partition
//	                jetsaga.cmd.*              saga starts and operator commands, per partition
//	JETSAGA_TIMERS  jetsaga.timer.sched.*.*    timer schedules (partition, timer id)
//	                jetsaga.timer.fire.*       fired timers, per partition
//	KV jetsaga_leases   partition leases (per-key TTL)
//	KV jetsaga_barrier  participants' idempotency barrier (bucket TTL)
//	KV jetsaga_sagas    saga index
//
// # Wire contract
//
// These are fixed, so participants in any language can take part and logs
// written by one version are read by the next:
//
//   - A saga's log is the subject jetsaga.log.<saga id> of JETSAGA_LOG,
//     where the saga id is a canonical lowercase UUID (ValidateSagaID).
//     Replaying a saga is reading that subject.
//   - Action and undo names are literal subject tokens joined by dots
//     (ValidateActionName); requests for action A go to jetsaga.req.A.
//   - A saga belongs to partition Partition(id, P): the 32-bit FNV-1a hash
//     of the id's bytes modulo P, the partition count recorded in the
//     "jetsaga.partitions" metadata of JETSAGA_WORK. Replies about the saga
//     go to jetsaga.reply.<partition>.
//   - A log message carries Nats-Expected-Last-Subject-Sequence (the
//     sequence of the saga's previous message, 0 for the first). A saga's
//     last decision is a rollup (Nats-Rollup: sub) restating its log,
//     with a Nats-TTL: the dedupe window.
//   - A finished saga is one message in JETSAGA_ARCHIVE on
//     jetsaga.archive.<FNV-1a of the id modulo 4096>, with headers
//     Jetsaga-Saga (its id) and Jetsaga-Summary (ArchiveMsg).
//
// # Appending: one writer per position
//
// Append is optimistic concurrency on the saga's subject: it succeeds only
// if the log still ends where the writer thinks, so of several writers
// racing for one position exactly one wins and the others get a
// *ConflictError. Creating a saga is an append at position 0, so it happens
// exactly once.
//
// Append is also safe to retry with the same arguments after any error: a
// retry of an append that was stored comes back as a conflict, and Append
// then looks at the message after the expected position and, if it holds
// its own bytes, returns its sequence. Either way a retry writes nothing
// and reports the original sequence.
//
// The flip side: two writers appending the very same bytes at the very same
// position are one append as far as the log can tell, and both succeed.
// Writers that must detect each other (two coordinators driving one saga)
// must put something of their own in the data, such as their lease's
// revision.
//
// # Reading
//
// Read fetches a saga's messages with batched direct gets (ADR-31), which
// need no consumer, in pages of up to 256 messages. On a replicated stream
// any replica may answer, so a read can miss the last few milliseconds of
// writes; an append based on such a read fails with a conflict rather than
// going wrong. Last asks the stream leader and is exact.
package streams
