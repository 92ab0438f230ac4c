package streams

import (
	"fmt"
)

// Stream and bucket names. They are part of the wire contract: participants
// written in other languages and the nats CLI address them by these names.
const (
	// LogStream holds every saga's log, one literal subject per saga.
	LogStream = "JETSAGA_LOG"
	// WorkStream holds action requests, participant replies and commands
	// to coordinators.
	WorkStream = "JETSAGA_WORK"
	// TimerStream holds durable timers as message schedules.
	TimerStream = "JETSAGA_TIMERS"

	// LeaseBucket holds one lease per partition (per-key TTL; the revision
	// is the fencing epoch).
	LeaseBucket = "jetsaga_leases"
	// BarrierBucket holds the participants' idempotency barrier records.
	BarrierBucket = "jetsaga_barrier"
	// SagaBucket is the saga index (saga id and idempotency key lookups).
	SagaBucket = "jetsaga_sagas"
	// DefinitionBucket holds saga definitions and defaults, once each,
	// under their content's reference (events.Ref); never changed.
	DefinitionBucket = "jetsaga_definitions"
)

// Subject prefixes and the wildcards each stream captures.
const (
	logPrefix       = "jetsaga.log."
	requestPrefix   = "jetsaga.req."
	replyPrefix     = "jetsaga.reply."
	commandPrefix   = "jetsaga.cmd."
	startPrefix     = "jetsaga.start."
	signalPrefix    = "jetsaga.signal."
	timerSchedPref  = "jetsaga.timer.sched."
	timerFirePrefix = "jetsaga.timer.fire."

	logSubjects        = logPrefix + "*"
	requestSubjects    = requestPrefix + ">"
	replySubjects      = replyPrefix + "*"
	commandSubjects    = commandPrefix + "*"
	timerSchedSubjects = timerSchedPref + "*.*"
	timerFireSubjects  = timerFirePrefix + "*"
)

// LogSubject is the subject of one saga's log: jetsaga.log.<sagaID>.
// sagaID must be valid (see ValidateSagaID).
func LogSubject(sagaID string) string { return Namespace("").LogSubject(sagaID) }

// RequestSubject is where requests for an action are published:
// jetsaga.req.<action>. action must be valid (see ValidateActionName).
func RequestSubject(action string) string { return Namespace("").RequestSubject(action) }

// ReplySubject is where participants reply about sagas of a partition:
// jetsaga.reply.<partition>.
func ReplySubject(partition int) string { return Namespace("").ReplySubject(partition) }

// CommandSubject is where saga starts and operator commands for sagas of a
// partition are sent: jetsaga.cmd.<partition>.
func CommandSubject(partition int) string { return Namespace("").CommandSubject(partition) }

// StartSubject is where a client asks the coordinator that owns partition
// to start a saga directly, over core NATS (not stored in any stream):
// jetsaga.start.<partition>. The owner answers once the saga's first
// append is durable (StartAnswer). With no answer, the client sends the
// same start as a command (CommandSubject), which waits in JETSAGA_WORK
// until a coordinator takes it.
func StartSubject(partition int) string { return Namespace("").StartSubject(partition) }

// StartQueue is the queue group coordinators subscribe to start subjects
// in, so that while a partition changes hands one of them answers.
const StartQueue = "jetsaga-start"

// SignalSubject is where a client sends a signal for an await node of a
// saga of partition to the coordinator that owns it, over core NATS:
// jetsaga.signal.<partition>. The owner answers (StartAnswer) once the
// signal is in the saga's log, or with why it was refused. With no
// answer, the client sends the same signal as a command (CommandSubject).
func SignalSubject(partition int) string { return Namespace("").SignalSubject(partition) }

// SignalQueue is the queue group of the signal subjects.
const SignalQueue = "jetsaga-signal"

// StartAnswer is a coordinator's answer to a direct start: exactly one
// field is set.
type StartAnswer struct {
	// OK: the saga exists, durably (created now, or earlier by the same
	// id; the client compares the request if the id could name an
	// earlier saga).
	OK bool `json:"ok,omitempty"`
	// Retry: not decided now (the partition is moving, say); send the
	// start as a command instead.
	Retry string `json:"retry,omitempty"`
	// Error: refused for good, and why.
	Error string `json:"error,omitempty"`
	// Created (with OK): this very start created the saga, so there is no
	// earlier start whose request the client must compare with its own.
	Created bool `json:"created,omitempty"`
}

// The NATS micro services jetsaga registers (github.com/nats-io/nats.go/micro),
// so `nats micro ls`, `info` and `stats` show them.
const (
	// CoordinatorService: every coordinator, with endpoints status
	// (StatusSubject), saga (SagaStateSubject) and drain (DrainSubject).
	CoordinatorService = "jetsaga-coordinator"
	// ParticipantService: every Go participant, with one endpoint per
	// action it serves (ParticipantActionSubject).
	ParticipantService = "jetsaga-participant"
)

// ParticipantActionSubject is where every participant of action answers
// with what it did for the action (requests served, errors, in flight):
// jetsaga.participant.<action>, an endpoint of ParticipantService.
func ParticipantActionSubject(action string) string {
	return Namespace("").ParticipantActionSubject(action)
}

const participantPrefix = "jetsaga.participant."

// DrainSubject is where operators ask a coordinator, named in the
// request (DrainRequest), to hand off its partitions or take them again.
const DrainSubject = "jetsaga.coordinator.drain"

// DrainRequest is the body of a request on DrainSubject.
type DrainRequest struct {
	Coordinator string `json:"coordinator"`
	// Undo lets a drained coordinator take partitions again.
	Undo bool `json:"undo,omitempty"`
}

// TimerScheduleSubject is the subject a timer's schedule message is
// published on: jetsaga.timer.sched.<partition>.<timerID>. A schedule
// replaces the previous one on the same subject, so timerID names one timer;
// it must be a single subject token (letters, digits, '-' and '_').
func TimerScheduleSubject(partition int, timerID string) string {
	return Namespace("").TimerScheduleSubject(partition, timerID)
}

// TimerFireSubject is the subject timers of a partition fire into:
// jetsaga.timer.fire.<partition>.
func TimerFireSubject(partition int) string { return Namespace("").TimerFireSubject(partition) }

// FNV-1a 32-bit parameters (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	fnv32Offset = 2166136261
	fnv32Prime  = 16777619
)

// Partition maps a saga to one of partitions partitions: the 32-bit FNV-1a
// hash of the id's bytes, modulo partitions. It is part of the wire contract
// (a participant replies on ReplySubject(Partition(id, P))) and never
// changes. It panics if partitions < 1, like a division by zero would.
func Partition(sagaID string, partitions int) int {
	if partitions < 1 {
		panic(fmt.Sprintf("streams: Partition: partitions must be at least 1, got %d", partitions))
	}
	h := uint32(fnv32Offset)
	for i := 0; i < len(sagaID); i++ {
		h ^= uint32(sagaID[i])
		h *= fnv32Prime
	}
	return int(h % uint32(partitions))
}

// ValidateActionName reports whether name can be used as an action (or undo)
// name: one or more non-empty tokens of ASCII letters, digits, '-' and '_',
// separated by single dots, such as "payments.charge". Such a name is a
// literal NATS subject suffix, so RequestSubject(name) addresses exactly one
// action. The error wraps ErrInvalidActionName and says what is wrong where.
func ValidateActionName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidActionName)
	}
	token, start := 1, 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if i == start {
				return fmt.Errorf("%w %q: token %d is empty (at byte %d)", ErrInvalidActionName, name, token, i)
			}
			token, start = token+1, i+1
		case isTokenByte(c):
		default:
			return fmt.Errorf("%w %q: token %d has %s at byte %d; tokens may contain only letters, digits, '-' and '_'",
				ErrInvalidActionName, name, token, describeByte(name, i), i)
		}
	}
	if start == len(name) {
		return fmt.Errorf("%w %q: token %d is empty (name ends with '.')", ErrInvalidActionName, name, token)
	}
	return nil
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func describeByte(s string, i int) string {
	switch c := s[i]; {
	case c == '*' || c == '>':
		return fmt.Sprintf("wildcard %q", c)
	case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		return fmt.Sprintf("whitespace %q", c)
	case c < 0x80:
		return fmt.Sprintf("%q", c)
	default:
		return "a non-ASCII byte"
	}
}

// ValidateSagaID reports whether id is a canonical saga id: a UUID in its
// lowercase 36-character form, such as "0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e"
// (what uuid.UUID.String returns). The error wraps ErrInvalidSagaID and says
// what is wrong.
func ValidateSagaID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrInvalidSagaID)
	}
	if len(id) != 36 {
		return fmt.Errorf("%w %q: has %d bytes, a canonical UUID has 36 (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", ErrInvalidSagaID, id, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("%w %q: byte %d must be '-'", ErrInvalidSagaID, id, i)
			}
			continue
		}
		if c >= 'A' && c <= 'F' {
			return fmt.Errorf("%w %q: uppercase hex digit at byte %d; use the lowercase form", ErrInvalidSagaID, id, i)
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w %q: %s at byte %d is not a hex digit", ErrInvalidSagaID, id, describeByte(id, i), i)
		}
	}
	// Every 36-byte string of lowercase hex digits with dashes at 8, 13,
	// 18 and 23 is a canonical UUID (uuid.Parse then String gives it
	// back; TestValidateSagaIDAgreesWithUUID checks it): no parse here,
	// on every append's path.
	return nil
}

// Core NATS request subjects coordinators answer (not stored in any stream).
const (
	// StatusSubject: every coordinator replies with its status (JSON), so a
	// request gathers replies for a moment.
	StatusSubject = "jetsaga.coordinator.status"
	sagaStatePref = "jetsaga.coordinator.saga."
)

// SagaStateSubject is where the coordinator driving a saga answers with the
// state it holds in memory: jetsaga.coordinator.saga.<sagaID>. No answer
// means no coordinator has the saga loaded (finished, or not recovered).
func SagaStateSubject(sagaID string) string { return Namespace("").SagaStateSubject(sagaID) }
