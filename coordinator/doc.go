// Package coordinator is jetsaga's saga execution coordinator: a long-lived
// component that drives sagas from their logs. It needs no user code — a
// saga's DAG is in its log.
//
//	c, err := coordinator.New(js, coordinator.Config{Name: "coord-1"})
//	if err != nil {
//		return err
//	}
//	if err := c.Start(ctx); err != nil { // checks the server, applies the topology, recovers
//		return err
//	}
//	defer c.Stop(context.Background()) // drains
//
// # How it drives a saga
//
// Sagas belong to partitions (streams.Partition). For each partition it owns,
// the coordinator consumes saga starts, operator commands and participant
// replies (one durable consumer on JETSAGA_WORK) and fired timers (one on
// JETSAGA_TIMERS), and handles them one at a time per partition:
//
//  1. load the saga (read its log and fold it, once; then kept in memory
//     until it finishes),
//  2. decide (internal/machine),
//  3. append the decision's events to the saga's log with optimistic
//     concurrency — before anything is acted on,
//  4. carry out the decision's commands: publish requests, arm timers,
//  5. update the saga index, and ack the input.
//
// A crash anywhere loses nothing: an input not yet acked is delivered again
// (and rejected as stale if its decision was already made), and on start
// the coordinator recovers every saga its partitions have in flight,
// re-sending outstanding requests and re-arming timers from the log. An
// append that loses a race (another writer moved the log on) drops the
// saga from memory and decides again from the log.
//
// # Timers
//
// An attempt's deadline is in the log (node.started), so it is armed in
// memory and re-armed from the log on recovery: a durable timer per attempt
// would cost a fourth JetStream write per node on the happy path. A retry's
// wait of 5 s or more is armed as a NATS message schedule (server 2.12+),
// which fires into JETSAGA_TIMERS even if no coordinator is running; shorter
// waits, below the schedules' one-second granularity, are armed in memory.
// Both are re-armed from the log on recovery.
package coordinator
