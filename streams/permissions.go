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

// barrierRead is the prefix of a direct get of a barrier key.
const barrierRead = "$JS.API.DIRECT.GET.KV_" + BarrierBucket + ".$KV." + BarrierBucket + "."

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
	in := inbox + ".>"
	api := "$JS.API."
	switch role {
	case RoleCoordinator:
		return Permissions{
			Publish: []string{api + ">", "$JS.ACK." + WorkStream + ".>", "$JS.ACK." + TimerStream + ".>",
				"$KV." + LeaseBucket + ".>", "$KV." + SagaBucket + ".>", "$KV." + DefinitionBucket + ".>",
				"jetsaga.log.>", archivePrefix + ">", "jetsaga.req.>", "jetsaga.timer.>", in},
			Subscribe:      []string{in, "jetsaga.coordinator.>", startPrefix + "*", signalPrefix + "*", microSubjects},
			AllowResponses: true, // status, saga state, drain and micro requests
		}, nil
	case RoleParticipant:
		if len(actions) == 0 {
			return Permissions{}, fmt.Errorf("streams: participant permissions need the actions it serves")
		}
		p := Permissions{
			Publish:        []string{api + "INFO", api + "STREAM.INFO." + WorkStream, "jetsaga.reply.*", api + "STREAM.INFO.KV_" + BarrierBucket},
			Subscribe:      []string{in, microSubjects},
			AllowResponses: true, // its micro service's requests
		}
		for _, a := range actions {
			if err := ValidateActionName(a); err != nil {
				return Permissions{}, err
			}
			c := ActionConsumerName(a)
			p.Publish = append(p.Publish,
				api+"CONSUMER.CREATE."+WorkStream+"."+c+"."+RequestSubject(a),
				api+"CONSUMER.INFO."+WorkStream+"."+c,
				api+"CONSUMER.MSG.NEXT."+WorkStream+"."+c,
				"$JS.ACK."+WorkStream+"."+c+".>",
				// Its actions' barrier records only: their keys start
				// with the action's token (internal/barrier.Key).
				barrierRead+ActionToken(a)+".>", "$KV."+BarrierBucket+"."+ActionToken(a)+".>")
			p.Subscribe = append(p.Subscribe, ParticipantActionSubject(a))
		}
		if o.LegacyBarrier {
			p.Publish = append(p.Publish, barrierRead+"*.*") // "<saga>.<node>": no action's new records
		}
		return p, nil
	case RoleClient, RoleOperator:
		p := Permissions{
			Publish: []string{api + "INFO", api + "STREAM.INFO.*", api + "DIRECT.GET." + LogStream, api + "DIRECT.GET." + LogStream + ".>",
				api + "STREAM.MSG.GET." + LogStream, api + "DIRECT.GET." + ArchiveStream, api + "DIRECT.GET." + ArchiveStream + ".>",
				api + "CONSUMER.CREATE." + ArchiveStream + ".>", api + "CONSUMER.MSG.NEXT." + ArchiveStream + ".>",
				api + "DIRECT.GET.KV_" + SagaBucket + ".>", api + "DIRECT.GET.KV_" + DefinitionBucket + ".>",
				api + "CONSUMER.CREATE.KV_" + SagaBucket + ".>", api + "CONSUMER.CREATE.KV_" + SagaBucket,
				api + "CONSUMER.DELETE.KV_" + SagaBucket + ".>", StatusSubject, SagaStateSubject("*"),
				microSubjects, participantPrefix + ">"},
			Subscribe: []string{in, "jetsaga.log.*"},
		}
		if role == RoleClient {
			// Commands, and reading back an earlier start command that a
			// duplicate one was deduplicated against (client.Start).
			p.Publish = append(p.Publish, "jetsaga.cmd.*", startPrefix+"*", signalPrefix+"*", api+"STREAM.MSG.GET."+WorkStream)
		}
		slices.Sort(p.Publish)
		return p, nil
	}
	return Permissions{}, fmt.Errorf("streams: unknown role %q (want coordinator, participant, client or operator)", role)
}
