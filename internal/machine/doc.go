// Package machine is the saga state machine: pure functions over values, with
// no I/O, no clock reads and no goroutines.
//
//   - Fold and (*State).Apply turn a saga's log into its state, rejecting any
//     event that is not a legal transition with an *IllegalEventError.
//   - Decide takes a state and one input (a start, a participant's reply, a
//     timer firing, an operator command, or recovery) and returns the events
//     to append to the log and the commands to carry out once they are
//     durable: requests to send and timers to arm.
//
// Decide builds its result by applying the events it emits to a copy of the
// state with the same Apply that Fold uses, so the state a coordinator holds
// after a decision is, by construction, the state a replay of its log gives.
//
// The coordinator's loop is: decide, append the events with optimistic
// concurrency, then (and only then) carry out the commands and adopt
// Decision.State. A crash between the append and the commands loses nothing:
// Recover re-issues every outstanding request and timer from the log.
package machine
