package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// Two deployments in namespaces "blue" and "green" share one server and
// one account, each user with its namespace's permissions only
// (jetsaga permissions --namespace). Each runs its sagas, over the same
// action names; neither sees the other's sagas, coordinators or requests,
// and the server refuses a user of one namespace the other's subjects.
func TestNamespacesSideBySide(t *testing.T) {
	t.Parallel()
	type deployment struct {
		ns                streams.Namespace
		coord, part, user securedUser
		cl                *client.Client
		js                jetstream.JetStream
		served            chan string
		ids               []string
	}
	var deps []*deployment
	var users []securedUser
	for _, ns := range []streams.Namespace{"blue", "green"} {
		d := &deployment{ns: ns, served: make(chan string, 100),
			coord: securedUser{name: string(ns) + "-coord", role: streams.RoleCoordinator, ns: ns},
			part:  securedUser{name: string(ns) + "-part", role: streams.RoleParticipant, ns: ns, actions: []string{"shared.act"}},
			user:  securedUser{name: string(ns) + "-cli", role: streams.RoleClient, ns: ns}}
		deps = append(deps, d)
		users = append(users, d.coord, d.part, d.user)
	}
	url := runSecuredServer(t, users)
	def := saga.New("ns").Then(saga.Action("a", "shared.act")).MustBuild()
	for _, d := range deps {
		cjs, _ := connectAs(t, url, d.coord)
		c, err := coordinator.New(cjs, coordinator.Config{Name: "c-" + string(d.ns), Topology: streams.Config{Namespace: d.ns, Partitions: testPartitions}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctxT(t)); err != nil {
			t.Fatalf("coordinator of %s with its permissions: %v", d.ns, err)
		}
		t.Cleanup(func() { _ = c.Stop(context.Background()) })
		pjs, _ := connectAs(t, url, d.part)
		p, err := participant.New(pjs, participant.Config{Name: "p-" + string(d.ns), Namespace: d.ns})
		if err != nil {
			t.Fatal(err)
		}
		served := d.served
		if err := p.Register("shared.act", func(_ context.Context, r *participant.Request) (any, error) {
			served <- r.SagaID
			return string(d.ns), nil
		}, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctxT(t)); err != nil {
			t.Fatalf("participant of %s with its permissions: %v", d.ns, err)
		}
		t.Cleanup(func() { _ = p.Stop(context.Background()) })
		ujs, _ := connectAs(t, url, d.user)
		d.js = ujs
		if d.cl, err = client.New(ctxT(t), ujs, client.WithNamespace(d.ns)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range deps {
		for range 3 {
			id, err := d.cl.Start(ctxT(t), def, nil)
			if err != nil {
				t.Fatal(err)
			}
			d.ids = append(d.ids, id)
		}
	}
	for i, d := range deps {
		other := deps[1-i]
		for _, id := range d.ids {
			s, err := d.cl.WaitFor(ctxT(t), id, func(s *client.Saga) bool { return s.Finished() })
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := s.Node("a"); s.Status != client.StatusSucceeded || string(n.Output) != `"`+string(d.ns)+`"` {
				t.Fatalf("saga %s of %s: %s, output %s: served by the other namespace's participant?", id, d.ns, s.Status, n.Output)
			}
			if _, err := other.cl.Status(ctxT(t), id); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("the client of %s sees saga %s of %s: %v", other.ns, id, d.ns, err)
			}
		}
		natstest.Eventually(t, 10*time.Second, func() error {
			sums, err := d.cl.List(ctxT(t), client.Filter{})
			if err != nil {
				return err
			}
			if len(sums) != len(d.ids) {
				return fmt.Errorf("%s lists %d sagas, want its own %d", d.ns, len(sums), len(d.ids))
			}
			for _, s := range sums {
				if !slices.Contains(d.ids, s.ID) {
					return fmt.Errorf("%s lists saga %s, which is not its own", d.ns, s.ID)
				}
			}
			return nil
		})
		sts, err := coordinator.GatherStatusIn(ctxT(t), d.js.Conn(), d.ns, 500*time.Millisecond)
		if err != nil || len(sts) != 1 || sts[0].Name != "c-"+string(d.ns) {
			t.Fatalf("coordinators of %s: %+v (%v)", d.ns, sts, err)
		}
		if n := len(d.served); n != len(d.ids) {
			t.Fatalf("the participant of %s served %d requests, want %d (its own sagas only)", d.ns, n, len(d.ids))
		}
	}

	// A client of blue cannot reach green: its start is refused by the
	// server, not sent to green's coordinators.
	bjs, bv := connectAs(t, url, deps[0].user)
	if _, err := client.New(ctxT(t), bjs, client.WithNamespace("green")); err == nil {
		if _, err := bjs.Conn().Request("green.jetsaga.start.0", []byte("{}"), time.Second); err == nil {
			t.Fatal("a client of blue sent a start to green")
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if bv.seen(`Permissions Violation for Publish to "green.jetsaga.start.0"`) || bv.seen(`"$JS.API.DIRECT.GET.KV_green_jetsaga_sagas`) {
			return nil
		}
		return fmt.Errorf("no permission violation reaching green: %v", bv.all())
	})
}
