// Package events holds jetsaga's wire vocabulary: the events of a saga's log,
// the requests sent to participants and their replies, and the one codec that
// reads and writes them as CloudEvents 1.0 in the JSON structured format.
//
// # The log
//
// Every message on a saga's log subject is one decision of the coordinator:
// a JSON array of one or more CloudEvents (the CloudEvents JSON batch format,
// content type application/cloudevents-batch+json). All events of a message
// were decided together and are applied together, in order. Event ids are
// "<saga id>:<n>" where n counts the saga's events from 0, so a replayed or
// retried decision carries the same ids and a gap or repeat is detectable.
//
// # Participants
//
// Action and undo requests (type io.jetsaga.action.request.v1) and replies
// (io.jetsaga.action.reply.v1) are single CloudEvents, one per message.
//
//	ev := events.Event{ID: id, Source: events.SourceCoordinator, SagaID: sagaID,
//		Data: &events.NodeSucceeded{Node: "flight", Attempt: 1, Output: out}}
//	b, err := events.EncodeBatch([]events.Event{ev})
//
// Decoding never panics; every failure is a *DecodeError that says which
// event, which attribute or field, and what was wrong.
package events
