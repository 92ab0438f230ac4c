package test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// gather sends a micro discovery request ($SRV.<verb>.<service>) and
// decodes every answer that comes within a second, as `nats micro` does.
func gather[T any](t *testing.T, nc *nats.Conn, verb, service string) []T {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := nc.PublishRequest("$SRV."+verb+"."+service, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var out []T
	for {
		m, err := sub.NextMsg(time.Second)
		if err != nil {
			return out
		}
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("$SRV.%s.%s answer %s: %v", verb, service, m.Data, err)
		}
		out = append(out, v)
	}
}

// Coordinators and Go participants are NATS micro services: discovery
// (what `nats micro ls` and `info` send) finds them with their endpoints,
// and their stats carry jetsaga's own counters. The status endpoint is the
// coordinator's status request.
func TestMicroServices(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, err := participant.New(e.js, participant.Config{Name: "micro-p"})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, *participant.Request) (any, error) { return "ok", nil }
	for _, a := range []string{"micro.a", "micro.b"} {
		if err := p.Register(a, ok, ok); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	def := saga.New("micro").Then(saga.Action("a", "micro.a")).Then(saga.Action("b", "micro.b")).MustBuild()
	id, err := e.cl.Start(ctxT(t), def, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.wait(id); s.Status != "succeeded" {
		t.Fatalf("saga %s", s.Status)
	}

	infos := gather[micro.Info](t, e.nc, "INFO", streams.CoordinatorService)
	if len(infos) != 1 || infos[0].Metadata["coordinator"] != "c1" {
		t.Fatalf("coordinator service info %+v", infos)
	}
	var endpoints []string
	for _, ep := range infos[0].Endpoints {
		endpoints = append(endpoints, ep.Name+" "+ep.Subject)
	}
	slices.Sort(endpoints)
	if want := []string{"drain " + streams.DrainSubject, "saga " + streams.SagaStateSubject("*"), "status " + streams.StatusSubject}; !slices.Equal(endpoints, want) {
		t.Fatalf("coordinator endpoints %v, want %v", endpoints, want)
	}
	if sts, err := coordinator.GatherStatus(ctxT(t), e.nc, 300*time.Millisecond); err != nil || len(sts) != 1 || sts[0].Name != "c1" {
		t.Fatalf("status through the service's endpoint: %+v, %v", sts, err)
	}
	cstats := gather[micro.Stats](t, e.nc, "STATS", streams.CoordinatorService)
	var cs coordinator.ServiceStats
	for _, ep := range cstats[0].Endpoints {
		if ep.Name == "status" {
			if err := json.Unmarshal(ep.Data, &cs); err != nil {
				t.Fatal(err)
			}
			if ep.NumRequests < 1 {
				t.Errorf("status endpoint counted %d requests", ep.NumRequests)
			}
		}
	}
	if cs.Coordinator != "c1" || cs.Started != 1 || cs.Finished != 1 || cs.Partitions != testPartitions {
		t.Fatalf("coordinator stats data %+v", cs)
	}

	pinfos := gather[micro.Info](t, e.nc, "INFO", streams.ParticipantService)
	if len(pinfos) != 1 || pinfos[0].Metadata["participant"] != "micro-p" || pinfos[0].Metadata["actions"] != "micro.a,micro.b" {
		t.Fatalf("participant service info %+v", pinfos)
	}
	pstats := gather[micro.Stats](t, e.nc, "STATS", streams.ParticipantService)
	served := map[string]int64{}
	for _, ep := range pstats[0].Endpoints {
		var as participant.ActionStats
		if err := json.Unmarshal(ep.Data, &as); err != nil {
			t.Fatal(err)
		}
		served[as.Action] = as.Served
	}
	if served["micro.a"] != 1 || served["micro.b"] != 1 {
		t.Fatalf("participant stats: served %v, want one request of each action", served)
	}
	m, err := e.nc.Request(streams.ParticipantActionSubject("micro.a"), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var as participant.ActionStats
	if err := json.Unmarshal(m.Data, &as); err != nil || as.Consumer != streams.ActionConsumerName("micro.a") || as.Served != 1 {
		t.Fatalf("the action's endpoint answered %s (%v)", m.Data, err)
	}

	if err := p.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := gather[micro.Info](t, e.nc, "INFO", streams.ParticipantService); len(got) != 0 {
		t.Fatalf("a stopped participant still answers discovery: %+v", got)
	}
}
