package streams

import (
	"fmt"
	"slices"
)

// Role is a kind of NATS user of jetsaga, for least-privilege permissions
// (docs/security.md).
type Role string

const (
	// RoleCoordinator drives sagas: it writes logs, requests, timers,
	// leases and the index, and creates the topology.
	RoleCoordinator Role = "coordinator"
	// RoleParticipant serves given actions: it reads their requests only,
	// replies, and (with the barrier) uses the barrier bucket.
	RoleParticipant Role = "participant"
	// RoleClient starts sagas and follows them (status, wait), and sends
	// operator commands.
	RoleClient Role = "client"
	// RoleOperator reads: logs, the index, coordinators' status. It can
	// neither start sagas nor send operator commands.
	RoleOperator Role = "operator"
)

// microSubjects are the requests of NATS micro services (PING, INFO and
// STATS, of all services, of one, or of one instance): coordinators and
// participants answer them; clients and operators send them.
const microSubjects = "$SRV.>"

// Permissions are the subjects a role may publish to and subscribe to
// (NATS allow lists; everything else is denied).
type Permissions struct {
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
	// AllowResponses: the role may reply to the requests it receives
	// (allow_responses), whatever their reply subject.
	AllowResponses bool `json:"allow_responses,omitempty"`
}

// RolePermissions returns the permissions of role. inbox is the prefix the
// role's connections use for replies (nats.CustomInboxPrefix); a role gets
// only its own inbox, so it cannot read others' replies (a coordinator's
// log reads, say). actions are the actions a participant serves.
func RolePermissions(role Role, inbox string, actions ...string) (Permissions, error) {
	return PermissionsFor(role, PermissionOptions{Inbox: inbox, Actions: actions})
}

// PermissionOptions say whose permissions PermissionsFor returns.
type PermissionOptions struct {
	// Inbox is the prefix the role's connections use for replies
	// (required).
	Inbox string
	// Actions are the actions a participant serves (required for one).
	Actions []string
	// Namespace is the deployment's namespace: every stream, bucket and
	// subject in the permissions is the namespace's.
	Namespace Namespace
	// LegacyBarrier lets a participant read barrier records where
	// releases before per-action key spaces kept them (every action's),
	// for participant.Config.LegacyBarrierKeys during an upgrade.
	LegacyBarrier bool
}

// PermissionsFor returns the permissions of role, as o says.
func PermissionsFor(role Role, o PermissionOptions) (Permissions, error) {
	inbox, actions := o.Inbox, o.Actions
	if inbox == "" {
		return Permissions{}, fmt.Errorf("streams: %s permissions need an inbox prefix (nats.CustomInboxPrefix)", role)
	}
	if err := o.Namespace.Validate(); err != nil {
		return Permissions{}, err
	}
	in := inbox + ".>"
	api := "$JS.API."
	ns := o.Namespace
	barrierRead := api + "DIRECT.GET.KV_" + ns.BarrierBucket() + ".$KV." + ns.BarrierBucket() + "."
	switch role {
	case RoleCoordinator:
		return Permissions{
			// The whole JetStream API: a coordinator creates and checks the
			// topology. It is trusted, in its namespace and beyond.
			Publish: []string{api + ">", "$JS.ACK." + ns.WorkStream() + ".>", "$JS.ACK." + ns.TimerStream() + ".>",
				"$KV." + ns.LeaseBucket() + ".>", "$KV." + ns.SagaBucket() + ".>", "$KV." + ns.DefinitionBucket() + ".>",
				ns.subject("jetsaga.log.>"), ns.subject(archivePrefix + ">"), ns.subject("jetsaga.req.>"), ns.subject("jetsaga.timer.>"), in},
			Subscribe:      []string{in, ns.subject("jetsaga.coordinator.>"), ns.subject(startPrefix + "*"), ns.subject(signalPrefix + "*"), microSubjects},
			AllowResponses: true, // status, saga state, drain and micro requests
		}, nil
	case RoleParticipant:
		if len(actions) == 0 {
			return Permissions{}, fmt.Errorf("streams: participant permissions need the actions it serves")
		}
		p := Permissions{
			Publish:        []string{api + "INFO", api + "STREAM.INFO." + ns.WorkStream(), ns.subject(replySubjects), api + "STREAM.INFO.KV_" + ns.BarrierBucket()},
			Subscribe:      []string{in, microSubjects},
			AllowResponses: true, // its micro service's requests
		}
		for _, a := range actions {
			if err := ValidateActionName(a); err != nil {
				return Permissions{}, err
			}
			c, work := ActionConsumerName(a), ns.WorkStream()
			p.Publish = append(p.Publish,
				api+"CONSUMER.CREATE."+work+"."+c+"."+ns.RequestSubject(a),
				api+"CONSUMER.INFO."+work+"."+c,
				api+"CONSUMER.MSG.NEXT."+work+"."+c,
				"$JS.ACK."+work+"."+c+".>",
				// Its actions' barrier records only: their keys start
				// with the action's token (internal/barrier.Key).
				barrierRead+ActionToken(a)+".>", "$KV."+ns.BarrierBucket()+"."+ActionToken(a)+".>")
			p.Subscribe = append(p.Subscribe, ns.ParticipantActionSubject(a))
		}
		if o.LegacyBarrier {
			p.Publish = append(p.Publish, barrierRead+"*.*") // "<saga>.<node>": no action's new records
		}
		return p, nil
	case RoleClient, RoleOperator:
		logs, archive, sagas := ns.LogStream(), ns.ArchiveStream(), ns.SagaBucket()
		p := Permissions{
			Publish: []string{api + "INFO", api + "STREAM.INFO.*", api + "DIRECT.GET." + logs, api + "DIRECT.GET." + logs + ".>",
				api + "STREAM.MSG.GET." + logs, api + "DIRECT.GET." + archive, api + "DIRECT.GET." + archive + ".>",
				api + "CONSUMER.CREATE." + archive + ".>", api + "CONSUMER.MSG.NEXT." + archive + ".>",
				api + "DIRECT.GET.KV_" + sagas + ".>", api + "DIRECT.GET.KV_" + ns.DefinitionBucket() + ".>",
				api + "CONSUMER.CREATE.KV_" + sagas + ".>", api + "CONSUMER.CREATE.KV_" + sagas,
				api + "CONSUMER.DELETE.KV_" + sagas + ".>", ns.StatusSubject(), ns.SagaStateSubject("*"),
				microSubjects, ns.subject(participantPrefix + ">")},
			Subscribe: []string{in, ns.subject(logSubjects)},
		}
		if role == RoleClient {
			// Commands, and reading back an earlier start command that a
			// duplicate one was deduplicated against (client.Start).
			// Drain requests too: handing a coordinator's partitions over
			// is an operator's act, like an abort.
			p.Publish = append(p.Publish, ns.subject(commandSubjects), ns.subject(startPrefix+"*"), ns.subject(signalPrefix+"*"), api+"STREAM.MSG.GET."+ns.WorkStream(), ns.DrainSubject())
		}
		slices.Sort(p.Publish)
		return p, nil
	}
	return Permissions{}, fmt.Errorf("streams: unknown role %q (want coordinator, participant, client or operator)", role)
}
