package streams

import (
	"fmt"
	"strconv"
)

// Namespace separates independent jetsaga deployments that share one NATS
// account: every stream and bucket name of a namespace N starts with "N_"
// (N_JETSAGA_LOG, N_jetsaga_barrier) and every subject with "N."
// (N.jetsaga.log.<id>), so no deployment sees another's sagas, requests
// or coordinators, and permissions can tell them apart. The empty
// Namespace is the default deployment, whose names are this package's
// constants and functions (LogStream, LogSubject, ...). Coordinators,
// participants, clients and every jetsaga command of one deployment must
// use the same namespace.
type Namespace string

// MaxNamespaceLen bounds a namespace, which lengthens every name.
const MaxNamespaceLen = 32

// Validate reports whether n can be a namespace: empty (the default), or
// up to MaxNamespaceLen ASCII letters, digits, '-' and '_'.
func (n Namespace) Validate() error {
	if len(n) > MaxNamespaceLen {
		return fmt.Errorf("streams: namespace %q is longer than %d characters", string(n), MaxNamespaceLen)
	}
	for i := 0; i < len(n); i++ {
		if !isTokenByte(n[i]) {
			return fmt.Errorf("streams: namespace %q: %s is not allowed (letters, digits, '-' and '_' only)", string(n), describeByte(string(n), i))
		}
	}
	return nil
}

// String is the namespace, or "(default)".
func (n Namespace) String() string {
	if n == "" {
		return "(default)"
	}
	return string(n)
}

// name prefixes a stream, bucket or micro service name.
func (n Namespace) name(s string) string {
	if n == "" {
		return s
	}
	return string(n) + "_" + s
}

// Subject is s in the namespace: s prefixed with "N." (unchanged in the
// default namespace). For subjects this package has no function for, such
// as a test tool's own reply subject.
func (n Namespace) Subject(s string) string { return n.subject(s) }

// subject prefixes a subject (or a subject prefix, or a wildcard).
func (n Namespace) subject(s string) string {
	if n == "" {
		return s
	}
	return string(n) + "." + s
}

// Streams and buckets of the namespace.
func (n Namespace) LogStream() string        { return n.name(LogStream) }
func (n Namespace) ArchiveStream() string    { return n.name(ArchiveStream) }
func (n Namespace) WorkStream() string       { return n.name(WorkStream) }
func (n Namespace) TimerStream() string      { return n.name(TimerStream) }
func (n Namespace) LeaseBucket() string      { return n.name(LeaseBucket) }
func (n Namespace) BarrierBucket() string    { return n.name(BarrierBucket) }
func (n Namespace) SagaBucket() string       { return n.name(SagaBucket) }
func (n Namespace) DefinitionBucket() string { return n.name(DefinitionBucket) }

// Subjects of the namespace; see the package functions of the same names.
func (n Namespace) LogSubject(sagaID string) string     { return n.subject(logPrefix + sagaID) }
func (n Namespace) RequestSubject(action string) string { return n.subject(requestPrefix + action) }
func (n Namespace) ReplySubject(partition int) string {
	return n.subject(replyPrefix + strconv.Itoa(partition))
}
func (n Namespace) CommandSubject(partition int) string {
	return n.subject(commandPrefix + strconv.Itoa(partition))
}
func (n Namespace) StartSubject(partition int) string {
	return n.subject(startPrefix + strconv.Itoa(partition))
}
func (n Namespace) SignalSubject(partition int) string {
	return n.subject(signalPrefix + strconv.Itoa(partition))
}
func (n Namespace) TimerScheduleSubject(partition int, timerID string) string {
	return n.subject(timerSchedPref + strconv.Itoa(partition) + "." + timerID)
}
func (n Namespace) TimerFireSubject(partition int) string {
	return n.subject(timerFirePrefix + strconv.Itoa(partition))
}
func (n Namespace) ArchiveSubject(sagaID string) string {
	return n.subject(archivePrefix + strconv.Itoa(Partition(sagaID, ArchiveBuckets)))
}
func (n Namespace) StatusSubject() string                 { return n.subject(StatusSubject) }
func (n Namespace) SagaStateSubject(sagaID string) string { return n.subject(sagaStatePref + sagaID) }
func (n Namespace) DrainSubject() string                  { return n.subject(DrainSubject) }
func (n Namespace) ParticipantActionSubject(action string) string {
	return n.subject(participantPrefix + action)
}
