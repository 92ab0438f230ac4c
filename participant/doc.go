// Package participant runs the actions and undos of sagas: the code that
// charges a card or books a seat, and the code that takes it back. A
// coordinator sends each attempt of a node's action as a request on the
// action's subject; a participant runs the registered handler and replies
// with its output or error (the wire contract is docs/protocol.md,
// "Participants").
//
//	p, err := participant.New(js, participant.Config{Logger: logger})
//	if err != nil {
//		return err
//	}
//	err = p.Register("payments.charge",
//		func(ctx context.Context, req *participant.Request) (any, error) {
//			var order struct{ Amount int }
//			if err := req.DecodeParams(&order); err != nil {
//				return nil, err // permanent: every attempt has the same params
//			}
//			var stock struct{ Reservation string }
//			if err := participant.Lookup(ctx, "reserve", &stock); err != nil {
//				return nil, err
//			}
//			id, err := bank.Charge(ctx, req.IdempotencyKey, order.Amount)
//			if errors.Is(err, bank.ErrDeclined) {
//				return nil, participant.Permanent(err) // the saga unwinds
//			}
//			if err != nil {
//				return nil, err // transient: retried per the node's policy
//			}
//			return map[string]string{"charge": id}, nil
//		},
//		func(ctx context.Context, req *participant.Request) (any, error) {
//			return nil, bank.Refund(ctx, req.IdempotencyKey)
//		})
//	if err := p.Start(ctx); err != nil {
//		return err // e.g. the topology is missing
//	}
//	defer p.Stop(context.WithoutCancel(ctx))
//
// # Handlers
//
// A Handler gets a *Request: saga id, node, attempt, op (do or undo),
// idempotency key, params, the outputs of the ancestors it may look up, the
// deadline, and for an undo the output of the action it undoes (JSON null
// when that action's outcome is unknown: it may never have run). Its
// context carries the same request, so Lookup(ctx, node, &v) and
// InProgress(ctx) work anywhere below the handler; it ends at the
// request's deadline.
//
// The error decides the reply. nil: success, with the output encoded as
// JSON. Permanent(err): error kind "permanent", the node fails and the
// saga unwinds. RetryAfter(d, err) and any other error: kind "transient",
// retried per the node's retry policy (no sooner than d). A lookup of a
// node the request has no output for (ErrUnknownNode, with the nodes that
// are available) and params that do not decode (ErrDecode) are permanent
// too: every attempt would see the same. A failing action must have changed
// nothing (actions are atomic); an undo must tolerate running twice and
// running for an action that never happened.
//
// Handlers run concurrently, up to Config.Concurrency at once over all
// actions; every action has its own consumer, so a slow action does not
// hold up the requests of another while slots are free. While a handler
// runs, the participant tells JetStream every third of Config.AckWait that
// the request is in progress, so a long action is not delivered again.
//
// # Delivery and the idempotency barrier
//
// Requests are delivered at least once: a participant may crash after the
// action took effect but before its reply, a coordinator may resend a
// request after it restarts, and a timed-out attempt is followed by another
// attempt with the same idempotency key. The barrier (on by default;
// Config.DisableBarrier) keeps one record per (saga, node) in the KV bucket
// jetsaga_barrier, under the key "<action token>.<saga id>.<node path in
// unpadded base64url>" (the action's own key space, which permissions can
// restrict it to), shared by the node's action and undo. Every change of a
// record is a compare-and-set on its revision, so of two workers racing
// for a record exactly one wins, even when reads are stale.
//
//	do request:   none ─────────► running ──ok────────► done      (output recorded)
//	              (lock)                  ──permanent─► failed    (error recorded)
//	                                      ──transient─► retry     (attempt and error recorded;
//	                                                                unknown, after a takeover)
//	                                      ──stopped───► none      (nothing was replied)
//	undo request: done, unknown ─► undoing ──ok───────► undone
//	                                       ──error────► back as it was
//	              none, failed, retry ──────────────► tombstone (the undo handler is not called)
//
// What this gives:
//
//   - A repeated do request (the same attempt again, or a later attempt after
//     one succeeded) replies the recorded output without running the
//     handler; after a permanent failure it replies the same error, and a
//     repeat of an attempt answered with a transient error (or of an
//     earlier attempt) gets that error again without running: run late,
//     it could take effect after the coordinator stopped retrying the node,
//     and nobody would undo it. A later attempt runs. The same holds for
//     repeated undos.
//   - A request for a node another worker is running (its lock is live) is
//     given back to JetStream and comes back after a short delay, instead
//     of running twice at once.
//   - An undo for an action that never ran succeeds without calling the
//     undo handler (null compensation) and leaves a tombstone; an action
//     request arriving after its node's undo started, or after a tombstone,
//     is refused with a permanent error instead of taking effect after its
//     compensation (no hanging).
//
// What it does not give: a worker that dies mid-handler leaves its lock,
// which expires after Config.LockTTL; then another worker takes the action
// over and runs the handler again, and the record says the outcome is
// unknown until a run settles it (an undo then runs the undo handler). A
// handler that cannot reach NATS to renew its lock is cancelled (cause
// ErrLockLost) when the lock expires, but a handler that ignores its
// context may still finish. So handlers must still be idempotent through
// Request.IdempotencyKey: the barrier stops redeliveries and duplicate
// requests from taking effect twice, not crashes in the middle of an
// action. Locks compare wall clocks of different machines: keep LockTTL
// well above their skew. Answers that run nothing (recorded output, refusal,
// already undone) may come from a slightly stale read; answers that run a
// handler never do. Records expire with the bucket's TTL
// (streams.Config.BarrierTTL, 7 days by default).
//
// With the barrier off, every delivery runs the handler.
//
// # Malformed requests
//
// A message on an action's subject that is not a valid action request for
// that action (not a CloudEvent, another type, another action, a reply_to
// that is not a subject) is logged with the reason and terminated: it is
// never delivered again and the participant carries on. If a reply cannot
// be published, the request is given back with a delay and comes back.
//
// # Lifecycle
//
// Register every action, then Start: it fails fast if the JETSAGA_WORK
// stream or the barrier bucket is missing (run streams.Apply first), and
// binds to each action's durable consumer, shared by all participants of
// the action (in any language) so they compete for its requests: it
// creates the consumer with the config docs/protocol.md publishes if it
// does not exist, and uses an existing one as it is (refusing one that
// filters another subject or does not want explicit acks). Stop stops
// taking requests, gives back the ones fetched but not started, waits for
// the running handlers and their replies, and returns; if its context ends
// first, the handlers are cancelled (cause ErrStopping) and their requests
// given back.
//
// If an action's consumer disappears while the participant runs (an
// operator deleted it), it is recreated as declared, which delivers the
// action's requests still in the stream again: with the barrier they are
// answered from its records. A closed NATS connection ends consuming; Stop
// still returns.
package participant
