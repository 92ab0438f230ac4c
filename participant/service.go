package participant

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go/micro"

	"github.com/jetsaga/jetsaga/internal/version"
	"github.com/jetsaga/jetsaga/streams"
)

// counters are what a participant did for one action, for its micro
// service's stats.
type counters struct {
	served    atomic.Int64 // requests replied to
	errors    atomic.Int64 // of those, replied with an error
	malformed atomic.Int64 // requests terminated as malformed
	inFlight  atomic.Int64 // requests being handled
}

// ActionStats is what a participant reports of one action: the answer of
// its endpoint (streams.ParticipantActionSubject), and the endpoint's
// stats data in `nats micro stats jetsaga-participant`.
type ActionStats struct {
	Participant string `json:"participant"`
	Action      string `json:"action"`
	Consumer    string `json:"consumer"`
	Served      int64  `json:"requests_served"`
	Errors      int64  `json:"requests_failed"`
	Malformed   int64  `json:"requests_malformed"`
	InFlight    int64  `json:"requests_in_flight"`
}

func (p *Participant) actionStats(a *action) ActionStats {
	return ActionStats{Participant: p.cfg.Name, Action: a.name, Consumer: streams.ActionConsumerName(a.name),
		Served: a.count.served.Load(), Errors: a.count.errors.Load(), Malformed: a.count.malformed.Load(), InFlight: a.count.inFlight.Load()}
}

// describe is the service's description: short, since `nats micro ls`
// prints it in a table; the actions are the endpoints.
func describe(name string, actions []string) string {
	if len(actions) <= 3 {
		return fmt.Sprintf("jetsaga participant %s: serves %s", name, strings.Join(actions, ", "))
	}
	return fmt.Sprintf("jetsaga participant %s: serves %d actions (its endpoints)", name, len(actions))
}

// endpointName is an action's endpoint name: micro allows only
// [A-Za-z0-9-_], so it is the action's token (dots as underscores and a
// hash, so "a.b" and "a_b" differ).
func endpointName(action string) string { return streams.ActionToken(action) }

// serve registers the participant as a NATS micro service
// (streams.ParticipantService), with an endpoint per action that every
// participant of the action answers (no queue group).
func (p *Participant) serve() (micro.Service, error) {
	names := slices.Sorted(maps.Keys(p.actions))
	byEndpoint := map[string]*action{}
	for _, n := range names {
		byEndpoint[endpointName(n)] = p.actions[n]
	}
	svc, err := micro.AddService(p.js.Conn(), micro.Config{
		Name:        streams.ParticipantService,
		Version:     version.Version,
		Description: describe(p.cfg.Name, names),
		Metadata: map[string]string{
			"namespace":   string(p.cfg.Namespace),
			"participant": p.cfg.Name,
			"actions":     strings.Join(names, ","),
			"barrier":     fmt.Sprint(p.barrier != nil),
		},
		QueueGroupDisabled: true,
		StatsHandler: func(e *micro.Endpoint) any {
			if a := byEndpoint[e.Name]; a != nil {
				return p.actionStats(a)
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range names {
		a := p.actions[n]
		errs = append(errs, svc.AddEndpoint(endpointName(n), micro.HandlerFunc(func(r micro.Request) {
			_ = r.RespondJSON(p.actionStats(a))
		}), micro.WithEndpointSubject(p.cfg.Namespace.ParticipantActionSubject(n)),
			micro.WithEndpointMetadata(map[string]string{"action": n, "consumer": streams.ActionConsumerName(n)})))
	}
	if err := errors.Join(errs...); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}
