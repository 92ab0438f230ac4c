package streams

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Consumers are declared here, with the streams, but created by the role
// that uses them (a coordinator for the partitions it owns, a participant
// for its actions), since which ones exist depends on who runs.

// DefaultAckWait is how long an action's consumer waits for an ack before
// redelivering. A request delivered into a fault (a pull request or a
// route that died with a NATS node) comes back only after it, so it is
// short: with 30 s it came back as the attempt timed out. Long handlers
// extend it with progress (+WPI), which the participant SDK sends every
// third of it, for requests waiting for a handler slot too.
const DefaultAckWait = 5 * time.Second

// coordinatorAckWait is the ack wait of the coordinators' consumers. A
// coordinator handles an input in milliseconds; when one dies, what it had
// taken and not acked comes back to the partition's next owner after this.
const coordinatorAckWait = 5 * time.Second

// PartitionConsumer is the durable consumer on JETSAGA_WORK through which
// the owner of partition p receives saga starts, operator commands and
// participant replies for the partition's sagas. Its name is fixed, so a new
// owner continues where the previous one stopped.
func PartitionConsumer(p int) jetstream.ConsumerConfig { return Namespace("").PartitionConsumer(p) }

// PartitionConsumer is PartitionConsumer in namespace n.
func (n Namespace) PartitionConsumer(p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        fmt.Sprintf("jetsaga-part-%d", p),
		Description:    fmt.Sprintf("jetsaga coordinator input, partition %d", p),
		FilterSubjects: []string{n.CommandSubject(p), n.ReplySubject(p)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        coordinatorAckWait,
		MaxDeliver:     -1,
		MaxAckPending:  10000,
		Metadata:       partitionMonitor(),
	}
}

// TimerConsumer is the durable consumer on JETSAGA_TIMERS through which the
// owner of partition p receives its fired timers.
func TimerConsumer(p int) jetstream.ConsumerConfig { return Namespace("").TimerConsumer(p) }

// TimerConsumer is TimerConsumer in namespace n.
func (n Namespace) TimerConsumer(p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       fmt.Sprintf("jetsaga-timer-%d", p),
		Description:   fmt.Sprintf("jetsaga fired timers, partition %d", p),
		FilterSubject: n.TimerFireSubject(p),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       coordinatorAckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
		Metadata:      partitionMonitor(),
	}
}

// ActionConsumer is the durable consumer on JETSAGA_WORK that every
// participant of action shares, so they compete for its requests (do and
// undo). ackWait 0 means DefaultAckWait.
func ActionConsumer(action string, ackWait time.Duration) jetstream.ConsumerConfig {
	return Namespace("").ActionConsumer(action, ackWait)
}

// ActionConsumer is ActionConsumer in namespace n.
func (n Namespace) ActionConsumer(action string, ackWait time.Duration) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	return jetstream.ConsumerConfig{
		Durable:       ActionConsumerName(action),
		Description:   "jetsaga participants of " + action,
		FilterSubject: n.RequestSubject(action),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
		Metadata:      actionMonitor(),
	}
}

// ActionConsumerName is the durable name of action's consumer:
// "jetsaga-act-" and the action's token (ActionToken).
func ActionConsumerName(action string) string { return "jetsaga-act-" + ActionToken(action) }

// ActionToken names an action in one subject token: the action with dots
// as underscores and the 32-bit FNV-1a hash of the action (8 hex digits),
// so "a.b" and "a_b" differ: "hotels_book-bca0c1e1". It names the action's
// consumer and its key space in the barrier bucket.
func ActionToken(action string) string {
	h := fnv.New32a()
	h.Write([]byte(action))
	return fmt.Sprintf("%s-%08x", strings.ReplaceAll(action, ".", "_"), h.Sum32())
}

// Pull requests of jetsaga's consumers (the coordinators' partitions, the
// participants' actions) ask for a heartbeat every PullHeartbeat and
// expire after PullExpiry. When the consumer's leader moves or its server
// dies, a pull request goes quiet; two missed heartbeats tell the client
// to pull again. nats.go's defaults (5 s, 30 s) leave a consumer deaf for
// 10 s or more after a node restart; these make it about 2 s.
const (
	PullHeartbeat = time.Second
	PullExpiry    = 5 * time.Second
)

// CheckActionConsumer compares the config of an existing consumer of
// action with the one the protocol publishes (ActionConsumer). unusable
// says why no participant may take requests from it (it filters another
// subject, or does not want explicit acks); differences lists what else
// differs ("deliver policy is new, the protocol's is all"): the consumer
// still works, so participants bind to it as it is and only say so.
func CheckActionConsumer(action string, got jetstream.ConsumerConfig) (unusable string, differences []string) {
	return Namespace("").CheckActionConsumer(action, got)
}

// CheckActionConsumer is CheckActionConsumer in namespace n.
func (n Namespace) CheckActionConsumer(action string, got jetstream.ConsumerConfig) (unusable string, differences []string) {
	want := n.ActionConsumer(action, got.AckWait)
	filters := got.FilterSubjects
	if got.FilterSubject != "" {
		filters = append([]string{got.FilterSubject}, filters...)
	}
	if len(filters) != 1 || filters[0] != want.FilterSubject {
		return fmt.Sprintf("consumer %s filters %q, not %q: it would deliver other actions' requests, or none", want.Durable, filters, want.FilterSubject), nil
	}
	if got.AckPolicy != jetstream.AckExplicitPolicy {
		return fmt.Sprintf("consumer %s has ack policy %s, not explicit: requests would count as handled before their replies were sent", want.Durable, got.AckPolicy), nil
	}
	if got.DeliverPolicy != want.DeliverPolicy {
		differences = append(differences, fmt.Sprintf("deliver policy is %s, the protocol's is %s (it matters only when the consumer is created: requests published before were not delivered)", got.DeliverPolicy, want.DeliverPolicy))
	}
	if got.MaxDeliver != want.MaxDeliver {
		differences = append(differences, fmt.Sprintf("max deliver is %d, the protocol's is %d (a request delivered that often is dropped, and its attempt times out)", got.MaxDeliver, want.MaxDeliver))
	}
	if got.MaxAckPending != want.MaxAckPending {
		differences = append(differences, fmt.Sprintf("max ack pending is %d, the protocol's is %d", got.MaxAckPending, want.MaxAckPending))
	}
	return "", differences
}
