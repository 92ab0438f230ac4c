package test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/barrier"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

// securedUser is a user of the secured server with one role's permissions.
type securedUser struct {
	name    string
	role    streams.Role
	ns      streams.Namespace
	actions []string
	// drop are publish permissions of the role the user lacks.
	drop []string
}

func (u securedUser) inbox() string { return "_INBOX_" + u.name }

// runSecuredServer starts a server whose users have exactly the roles'
// permissions (streams.RolePermissions).
func runSecuredServer(t *testing.T, users []securedUser) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	for _, u := range users {
		p, err := streams.PermissionsFor(u.role, streams.PermissionOptions{Inbox: u.inbox(), Actions: u.actions, Namespace: u.ns})
		if err != nil {
			t.Fatal(err)
		}
		p.Publish = slices.DeleteFunc(p.Publish, func(s string) bool { return slices.Contains(u.drop, s) })
		perms := &server.Permissions{Publish: &server.SubjectPermission{Allow: p.Publish}, Subscribe: &server.SubjectPermission{Allow: p.Subscribe}}
		if p.AllowResponses {
			perms.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		}
		opts.Users = append(opts.Users, &server.User{Username: u.name, Password: u.name + "-secret", Permissions: perms})
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("secured server not ready")
	}
	return s.ClientURL()
}

// violations collects the permission violations a connection is told of.
type violations struct {
	mu   sync.Mutex
	msgs []string
}

func (v *violations) seen(part string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.msgs {
		if strings.Contains(m, part) {
			return true
		}
	}
	return false
}

func (v *violations) all() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.msgs...)
}

func connectAs(t *testing.T, url string, u securedUser) (jetstream.JetStream, *violations) {
	t.Helper()
	v := &violations{}
	nc, err := nats.Connect(url, nats.UserInfo(u.name, u.name+"-secret"), nats.CustomInboxPrefix(u.inbox()),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			v.mu.Lock()
			v.msgs = append(v.msgs, err.Error())
			v.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", u.name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, v
}

// Each role works with exactly its permissions, and cannot overstep them.
func TestLeastPrivilegeRoles(t *testing.T) {
	t.Parallel()
	coord := securedUser{name: "coord", role: streams.RoleCoordinator}
	pa := securedUser{name: "pa", role: streams.RoleParticipant, actions: []string{"secure.a"}}
	pb := securedUser{name: "pb", role: streams.RoleParticipant, actions: []string{"secure.b"}}
	cli := securedUser{name: "cli", role: streams.RoleClient}
	op := securedUser{name: "op", role: streams.RoleOperator}
	url := runSecuredServer(t, []securedUser{coord, pa, pb, cli, op})

	cjs, _ := connectAs(t, url, coord)
	c, err := coordinator.New(cjs, coordinator.Config{Name: "c", Topology: testTopo(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatalf("coordinator with its permissions: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	startParticipant := func(js jetstream.JetStream, action string) error {
		p, err := participant.New(js, participant.Config{Name: strings.ReplaceAll(action, ".", "-")})
		if err != nil {
			return err
		}
		echo := func(_ context.Context, req *participant.Request) (any, error) {
			return map[string]string{"by": req.Action}, nil
		}
		if err := p.Register(action, echo, echo); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := p.Start(ctx); err != nil {
			return err
		}
		t.Cleanup(func() { _ = p.Stop(context.Background()) })
		return nil
	}
	pajs, pav := connectAs(t, url, pa)
	pbjs, _ := connectAs(t, url, pb)
	if err := startParticipant(pajs, "secure.a"); err != nil {
		t.Fatalf("participant of secure.a with its permissions: %v", err)
	}
	if err := startParticipant(pbjs, "secure.b"); err != nil {
		t.Fatalf("participant of secure.b with its permissions: %v", err)
	}

	// A client starts a saga and follows it to the end.
	clijs, _ := connectAs(t, url, cli)
	cl, err := client.New(ctxT(t), clijs)
	if err != nil {
		t.Fatalf("client with its permissions: %v", err)
	}
	def := saga.New("secured").Then(saga.Action("a", "secure.a").Undo("secure.a")).Then(saga.Action("b", "secure.b")).MustBuild()
	id, err := cl.Start(ctxT(t), def, map[string]string{"secret": "params of this saga"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cl: cl}
	if s := e.wait(id); s.Status != client.StatusSucceeded {
		t.Fatalf("saga %s", s.Status)
	}

	// A read-only operator reads, and cannot start or abort.
	opjs, opv := connectAs(t, url, op)
	ocl, err := client.New(ctxT(t), opjs)
	if err != nil {
		t.Fatalf("operator client: %v", err)
	}
	if s, err := ocl.Status(ctxT(t), id); err != nil || s.Status != client.StatusSucceeded {
		t.Fatalf("operator reads the saga: %v %v", s, err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		sums, err := ocl.List(ctxT(t), client.Filter{})
		if err != nil {
			return fmt.Errorf("operator lists sagas: %w", err)
		}
		for _, s := range sums {
			if s.ID == id && s.Status == "succeeded" {
				return nil // read from the archive
			}
		}
		return fmt.Errorf("the finished saga is not listed: %+v", sums)
	})
	if e, err := streams.NewLog(opjs).Archived(ctxT(t), id); err != nil || len(e.Summary) == 0 {
		t.Fatalf("operator reads the archive: %v", err)
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := ocl.Start(short(), def, nil); err == nil {
		t.Fatal("a read-only operator started a saga")
	}
	if err := ocl.Abort(short(), id, "no"); err == nil {
		t.Fatal("a read-only operator sent an abort")
	}
	if !opv.seen(`Permissions Violation for Publish to "jetsaga.cmd.`) {
		t.Fatalf("the operator's start and abort were not refused by permissions: %v", opv.all())
	}

	// The participant of secure.a cannot read secure.b's requests...
	if err := startParticipant(pajs, "secure.b"); err == nil {
		t.Fatal("the participant of secure.a consumed secure.b's requests")
	}
	sub, err := pajs.Conn().SubscribeSync("jetsaga.req.>")
	if err == nil {
		_ = pajs.Conn().Flush()
		_, _ = sub.NextMsg(200 * time.Millisecond)
	}
	if !pav.seen(`Permissions Violation for Subscription to "jetsaga.req.>"`) {
		t.Fatalf("subscribing to every request was not refused: %v", pav.all())
	}
	// ...cannot append to a saga's log...
	if _, err := pajs.Publish(short(), streams.LogSubject(id), []byte("[]")); err == nil {
		t.Fatal("the participant appended to a saga's log")
	}
	// ...and cannot read a saga's log (and so its params).
	if _, err := streams.NewLog(pajs).Read(short(), id, 0); err == nil {
		t.Fatal("the participant read a saga's log")
	} else if errors.Is(err, streams.ErrNotFound) {
		t.Fatalf("reading the log was not refused but found nothing: %v", err)
	}
	// Barrier isolation: the participant of secure.a reads its own
	// action's records, and the server refuses it secure.b's (which hold
	// secure.b's outputs), for reading and for writing.
	pkv, err := pajs.KeyValue(short(), streams.BarrierBucket)
	if err != nil {
		t.Fatalf("the participant binds the barrier bucket: %v", err)
	}
	if e, err := pkv.Get(short(), barrier.Key("secure.a", id, "a")); err != nil || !strings.Contains(string(e.Value()), `"state":"done"`) {
		t.Fatalf("the participant of secure.a reads its own record: %v", err)
	}
	if _, err := pkv.Get(short(), barrier.Key("secure.b", id, "b")); err == nil {
		t.Fatal("the participant of secure.a read secure.b's barrier record")
	}
	if _, err := pkv.Put(short(), barrier.Key("secure.b", id, "b"), []byte(`{"state":"done"}`)); err == nil {
		t.Fatal("the participant of secure.a wrote secure.b's barrier record")
	}
	if _, err := pkv.Get(short(), barrier.LegacyKey(id, "b")); err == nil {
		t.Fatal("the participant of secure.a read a legacy barrier key without --legacy-barrier")
	}
	for _, want := range []string{
		`Publish to "$JS.API.DIRECT.GET.KV_jetsaga_barrier.$KV.jetsaga_barrier.` + streams.ActionToken("secure.b") + ".",
		`Publish to "$KV.jetsaga_barrier.` + streams.ActionToken("secure.b") + ".",
		`Publish to "$JS.API.CONSUMER.INFO.JETSAGA_WORK.` + streams.ActionConsumerName("secure.b"), // binding comes first
		`Publish to "jetsaga.log.` + id,
		`Publish to "$JS.API.DIRECT.GET.JETSAGA_LOG"`,
	} {
		if !pav.seen(want) {
			t.Errorf("no permissions violation for %s: %v", want, pav.all())
		}
	}
}
