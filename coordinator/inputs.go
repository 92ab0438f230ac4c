package coordinator

import (
	"encoding/json"
	"fmt"
	"github.com/nats-io/nats.go/jetstream"
	"time"

	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/streams"
)

// input is anything a partition's goroutine handles: one Go type per kind,
// switched on exhaustively in partition.handle. There are three families:
// inputs for one saga (sagaBound), results of I/O the partition started
// (…Done), and the partition's own housekeeping.
type input interface{ isInput() }

// sagaBound is an input for one saga. It waits while that saga's log is
// being read or written, so each decision builds on the durable one before.
type sagaBound interface {
	input
	saga() string
	// message is the consumed message to settle once the input is handled;
	// nil for an input the partition made itself.
	message() delivery
	describe() string
}

// sagaInput is a sagaBound input the saga's machine decides.
type sagaInput interface {
	sagaBound
	decision(now time.Time) machine.Input
}

// replyInput is a participant's reply.
type replyInput struct {
	msg   delivery
	id    string
	reply events.ActionReply
}

// startInput is a command to start a saga.
type startInput struct {
	msg         delivery
	id          string
	created     events.SagaCreated
	faults      []events.Fault
	traceParent string
	// sent is when the client sent the command.
	sent time.Time
	// redelivered: the command was delivered before (so it may have
	// started its saga already).
	redelivered bool
}

// operatorInput is an operator's command, checked when it was decoded.
type operatorInput struct {
	msg delivery
	id  string
	cmd events.OperatorCommand
}

// signalInput is a signal for an await node; sigID is its event's id.
type signalInput struct {
	msg   delivery
	id    string
	sigID string
	sig   events.Signal
}

func (i signalInput) saga() string      { return i.id }
func (i signalInput) message() delivery { return i.msg }
func (i signalInput) describe() string  { return "signal for " + i.sig.Node }
func (signalInput) isInput()            {}
func (i signalInput) decision(now time.Time) machine.Input {
	return machine.Signal{Now: now, Node: i.sig.Node, ID: i.sigID, Data: i.sig.Data, Reject: i.sig.Reject, Sender: i.sig.Sender}
}

// timerInput is a fired retry or attempt timer: from JETSAGA_TIMERS (msg
// set) or armed in memory (msg nil).
type timerInput struct {
	msg   delivery
	id    string
	timer machine.Timer
}

// recoverInput resends a saga's outstanding requests and re-arms its
// timers: for a saga read afresh from its log, or whose commands failed.
type recoverInput struct {
	id string
	// listed is the summary its marker held when a recovery pass listed
	// it (nil otherwise): the marker is written again only if it differs.
	listed *index.Summary
}

// advanceInput gives a saga held back by Config.MaxInFlight a chance to
// start nodes.
type advanceInput struct{ id string }

// expireInput is a finished saga's expiry timer: remove its log and
// summary.
type expireInput struct {
	msg delivery
	id  string
}

// queryInput asks for a saga's state in memory (nil if not loaded here).
type queryInput struct {
	id     string
	answer func(*run)
}

func (i replyInput) saga() string    { return i.id }
func (i startInput) saga() string    { return i.id }
func (i operatorInput) saga() string { return i.id }
func (i timerInput) saga() string    { return i.id }
func (i recoverInput) saga() string  { return i.id }
func (i advanceInput) saga() string  { return i.id }
func (i expireInput) saga() string   { return i.id }
func (i queryInput) saga() string    { return i.id }

func (i replyInput) message() delivery    { return i.msg }
func (i startInput) message() delivery    { return i.msg }
func (i operatorInput) message() delivery { return i.msg }
func (i timerInput) message() delivery    { return i.msg }
func (recoverInput) message() delivery    { return nil }
func (advanceInput) message() delivery    { return nil }
func (i expireInput) message() delivery   { return i.msg }
func (queryInput) message() delivery      { return nil }

func (i replyInput) describe() string {
	return fmt.Sprintf("reply %s %s #%d", i.reply.Node, i.reply.Op, i.reply.Attempt)
}
func (startInput) describe() string      { return string(events.TypeCommandStart) }
func (i operatorInput) describe() string { return "operator " + string(i.cmd.Action) }
func (i timerInput) describe() string    { return "timer " + i.timer.ID() }
func (recoverInput) describe() string    { return "recover" }
func (advanceInput) describe() string    { return "advance" }
func (expireInput) describe() string     { return "expire" }
func (queryInput) describe() string      { return "query" }

func (i replyInput) decision(now time.Time) machine.Input {
	return machine.Reply{Now: now, Reply: i.reply}
}
func (i startInput) decision(now time.Time) machine.Input {
	return machine.Start{Now: now, Created: i.created, Faults: i.faults, TraceParent: i.traceParent}
}
func (i operatorInput) decision(now time.Time) machine.Input {
	in, _ := machine.OperatorInput(now, i.cmd) // checked when decoded
	return in
}
func (i timerInput) decision(now time.Time) machine.Input {
	return machine.TimerFired{Now: now, Timer: i.timer}
}
func (recoverInput) decision(now time.Time) machine.Input { return machine.Recover{Now: now} }
func (advanceInput) decision(now time.Time) machine.Input { return machine.Advance{Now: now} }

// retryInput is an input of the partition's own, tried again after a
// delay (a message is redelivered by the server instead).
type retryInput struct{ t task }

// recoverPassInput starts a recovery pass over the partition's sagas
// marked in flight.
type recoverPassInput struct{}

// wakeInput: requests in flight finished elsewhere; there may be room for
// sagas held back by Config.MaxInFlight.
type wakeInput struct{}

// sendDueInput is a request held back by an injected delay, now due.
type sendDueInput struct {
	id  string
	cmd machine.SendRequest
}

// archiveAgainInput is a finished saga's archiving, tried again after a
// failure.
type archiveAgainInput struct{ a *archiving }

// Results of I/O the partition started.
type (
	// loadDone: a saga's log was read and decoded, with the definition
	// its saga.created refers to.
	loadDone struct {
		id   string
		msgs []sagalog.Message
		raw  [][]byte // the messages as stored
		err  error
	}
	// appendDone: a decision's append (and, for a new saga, its in-flight
	// marker) answered.
	appendDone struct {
		l      *landing
		marker bool // the answer is the marker's, not the append's
		seq    uint64
		err    error
	}
	// markDone: a saga read afresh was marked in flight again.
	markDone struct {
		id  string
		err error
	}
	// publishDone: a request or timer schedule was stored, or not.
	publishDone struct {
		id, what string
		err      error
	}
	// indexDone: a summary was written, or not.
	indexDone struct {
		sum index.Summary
		err error
	}
	// finishDone: a finished saga was archived and its marker
	// cleared, or not.
	finishDone struct {
		id  string
		a   *archiving // nil: nothing to try again
		err error
	}
	// archiveChecked: the archive was searched for the saga of an old
	// start delivered again.
	archiveChecked struct {
		t     task
		found bool
		err   error
	}
	// listDone: the partition's sagas in flight were listed.
	listDone struct {
		sums []index.Summary
		err  error
	}
	// expireDone: a finished saga's log and summary were removed, or not.
	expireDone struct {
		t   task
		err error
	}
)

func (replyInput) isInput()        {}
func (startInput) isInput()        {}
func (operatorInput) isInput()     {}
func (timerInput) isInput()        {}
func (recoverInput) isInput()      {}
func (advanceInput) isInput()      {}
func (expireInput) isInput()       {}
func (queryInput) isInput()        {}
func (retryInput) isInput()        {}
func (recoverPassInput) isInput()  {}
func (wakeInput) isInput()         {}
func (sendDueInput) isInput()      {}
func (loadDone) isInput()          {}
func (appendDone) isInput()        {}
func (markDone) isInput()          {}
func (publishDone) isInput()       {}
func (indexDone) isInput()         {}
func (finishDone) isInput()        {}
func (archiveAgainInput) isInput() {}
func (archiveChecked) isInput()    {}
func (listDone) isInput()          {}
func (expireDone) isInput()        {}

// task is a saga's input on its way through the partition, with what it
// went through: decisions lost to write races, and whether the log was
// read again after the machine rejected it.
type task struct {
	in        sagaBound
	attempt   int
	refreshed bool
	// notArchived: a start the archive was searched for (tooOld), and
	// that it does not hold.
	notArchived bool
}

// workInput turns a message from JETSAGA_WORK (a command or a reply) into
// an input. A message that cannot be one is a *rejection, with the reason:
// it will never become valid.
func workInput(m delivery, ns streams.Namespace, partition, partitions int) (sagaBound, *rejection) {
	ev, err := events.Decode(m.Data())
	if err != nil {
		if m.Subject() == ns.ReplySubject(partition) {
			// A reply that names a real request but is malformed fails
			// that attempt at once, saying what was wrong, rather than
			// leaving it to time out.
			if requestID, ok := events.ReplyTarget(m.Data()); ok {
				return malformedReply(m, requestID, partition, partitions, err.Error())
			}
		}
		return nil, &rejection{kind: rejectMalformed, reason: "malformed message on " + m.Subject(), err: err}
	}
	if got := streams.Partition(ev.SagaID, partitions); got != partition {
		return nil, &rejection{kind: rejectWrongPartition, sagaID: ev.SagaID, reason: fmt.Sprintf("saga belongs to partition %d, not %d", got, partition)}
	}
	switch d := ev.Data.(type) {
	case *events.ActionReply:
		if m.Subject() != ns.ReplySubject(partition) {
			return nil, &rejection{kind: rejectMisrouted, sagaID: ev.SagaID, reason: "a reply on the command subject"}
		}
		if want := events.ReplyID(d.RequestID); ev.ID != want {
			return nil, &rejection{kind: rejectForged, sagaID: ev.SagaID, reason: fmt.Sprintf("reply id %q does not answer request %q", ev.ID, d.RequestID)}
		}
		if saga, node, op, attempt, ok := events.ParseRequestID(d.RequestID); ok && saga == ev.SagaID && (node != d.Node || op != d.Op || attempt != d.Attempt) {
			return malformedReply(m, d.RequestID, partition, partitions,
				fmt.Sprintf("its node, op and attempt (%s %s #%d) are not those of the request it names (%s %s #%d)", d.Node, d.Op, d.Attempt, node, op, attempt))
		}
		return replyInput{msg: m, id: ev.SagaID, reply: *d}, nil
	case *events.StartSaga:
		return startInput{msg: m, id: ev.SagaID, created: d.SagaCreated, faults: d.Faults, traceParent: ev.TraceParent, sent: ev.Time, redelivered: redelivered(m)}, nil
	case *events.OperatorCommand:
		if _, err := machine.OperatorInput(time.Time{}, *d); err != nil {
			return nil, &rejection{kind: rejectMalformed, sagaID: ev.SagaID, reason: "an operator command jetsaga does not know", err: err}
		}
		return operatorInput{msg: m, id: ev.SagaID, cmd: *d}, nil
	case *events.Signal:
		return signalInput{msg: m, id: ev.SagaID, sigID: ev.ID, sig: *d}, nil
	}
	return nil, &rejection{kind: rejectMisrouted, sagaID: ev.SagaID, reason: fmt.Sprintf("unexpected %s on %s", ev.Type(), m.Subject())}
}

// malformedReply makes a reply that failed to decode, but names a request
// of partition, into a failure of that request's attempt (transient: the
// node's retry policy applies), with what was wrong as its message.
func malformedReply(m delivery, requestID string, partition, partitions int, reason string) (sagaBound, *rejection) {
	sagaID, node, op, attempt, _ := events.ParseRequestID(requestID)
	if got := streams.Partition(sagaID, partitions); got != partition {
		return nil, &rejection{kind: rejectWrongPartition, sagaID: sagaID, reason: fmt.Sprintf("saga belongs to partition %d, not %d", got, partition)}
	}
	reply := events.ActionReply{RequestID: requestID, Op: op, Node: node, Attempt: attempt,
		Error: &events.Error{Kind: events.ErrorTransient, Message: "malformed reply: " + reason}}
	return replyInput{msg: m, id: sagaID, reply: reply}, nil
}

// timerMsg is the body of a fired retry or expiry timer.
type timerMsg struct {
	SagaID string        `json:"saga_id"`
	Timer  machine.Timer `json:"timer"`
}

// firedInput turns a fired timer from JETSAGA_TIMERS into an input.
func firedInput(m delivery) (sagaBound, *rejection) {
	var tm timerMsg
	if err := json.Unmarshal(m.Data(), &tm); err != nil || streams.ValidateSagaID(tm.SagaID) != nil {
		return nil, &rejection{kind: rejectMalformed, reason: "malformed timer", err: err}
	}
	if tm.Timer.Kind == timerExpire {
		return expireInput{msg: m, id: tm.SagaID}, nil
	}
	return timerInput{msg: m, id: tm.SagaID, timer: tm.Timer}, nil
}

// rejection is why a consumed message is not an input.
type rejection struct {
	kind, sagaID, reason string
	err                  error
}

// redelivered reports whether m was delivered before (a JetStream
// message's metadata says so; a direct start never is).
func redelivered(m delivery) bool {
	md, ok := m.(interface {
		Metadata() (*jetstream.MsgMetadata, error)
	})
	if !ok {
		return false
	}
	meta, err := md.Metadata()
	return err == nil && meta.NumDelivered > 1
}
