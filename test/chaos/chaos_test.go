//go:build unix

package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// The scenarios run one at a time, not in parallel: each loads a 2-core
// machine on its own, and faults are only meaningful when the processes
// they strike get to run.

// A coordinator killed (SIGKILL) and restarted as itself, again and again,
// while sagas run: every saga still finishes once, as planned, with no
// effect left behind or applied twice. Without partition leases every
// coordinator drives every partition and they compete (the log's
// optimistic concurrency keeps them honest); with leases, each kill is a
// failover. Most kills are brief; every few, the coordinator stays down
// longer than a lease lives (10 s by default) and a renewal round, so that
// the others take its partitions over, and hand them back when it returns.
func TestChaosCoordinatorKills(t *testing.T) {
	r := newRig(t, "coordinator kills",
		scenario{sagas: 40, every: 600 * time.Millisecond, faults: 4,
			gap: span(1500*time.Millisecond, 3*time.Second), down: span(200*time.Millisecond, 1500*time.Millisecond),
			longDown: span(15*time.Second, 16*time.Second), longEvery: 4, finish: 2 * time.Minute},
		scenario{sagas: 1200, every: 150 * time.Millisecond, faults: 25,
			gap: span(time.Second, 3*time.Second), down: span(100*time.Millisecond, 3*time.Second),
			longDown: span(15*time.Second, 25*time.Second), longEvery: 5, finish: 10 * time.Minute})
	srv := natstest.RunServer(t)
	r.connect(srv.ClientURL())
	r.startCoordinators(srv.ClientURL(), 3)
	r.startClient(2)
	var kills []pause
	r.chaos(func(i int) string {
		c := r.coords[r.rng.IntN(len(r.coords))]
		at := time.Now()
		c.kill()
		down := r.downFor(i)
		sleepUntil(context.Background(), time.Now().Add(down))
		c.restart()
		kills = append(kills, pause{coordinator: c.name, from: at, to: time.Now()})
		r.waitCoordinatorUp(c)
		return fmt.Sprintf("killed %s, restarted after %s", c.name, down.Round(time.Millisecond))
	})
	rep := r.finish(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	writes, err := writesByCoordinator(ctx, r.cl, r.ids())
	if err != nil {
		t.Fatal(err)
	}
	logFailovers(t, kills, writes)
	r.logFigures(rep)
}

// logFailovers reports, for each kill that kept a coordinator down past
// its leases' life, the failover time: from the SIGKILL to the first event
// another coordinator appended to a saga of a partition the victim drove
// (the partitions it wrote to in the 5 s before the kill). A figure, not an
// assertion.
func logFailovers(t *testing.T, kills []pause, writes map[string][]write) {
	t.Helper()
	var all []write
	for _, ws := range writes {
		all = append(all, ws...)
	}
	var samples []time.Duration
	for _, k := range kills {
		if k.to.Sub(k.from) < leaseTTL+time.Second {
			continue
		}
		victims := map[int]bool{}
		for _, w := range writes[k.coordinator] {
			if w.Time.Before(k.from) && w.Time.After(k.from.Add(-5*time.Second)) {
				victims[streams.Partition(w.SagaID, partitions)] = true
			}
		}
		var first time.Duration
		for _, w := range all {
			if w.Coordinator != k.coordinator && w.Time.After(k.from) && victims[streams.Partition(w.SagaID, partitions)] &&
				(first == 0 || w.Time.Sub(k.from) < first) {
				first = w.Time.Sub(k.from)
			}
		}
		if first > 0 {
			samples = append(samples, first)
			t.Logf("failover: %s killed at %s; another coordinator wrote to a saga of its partitions %s later (lease TTL %s)",
				k.coordinator, k.from.Format("15:04:05.000"), first.Round(time.Millisecond), leaseTTL)
		}
	}
	if len(samples) > 0 {
		slices.Sort(samples)
		t.Logf("failover after SIGKILL, lease TTL %s: %d samples, median %s, max %s", leaseTTL, len(samples),
			samples[len(samples)/2].Round(time.Millisecond), samples[len(samples)-1].Round(time.Millisecond))
	}
}

// A NATS node of a 3-node cluster killed (SIGKILL) mid-run and restarted
// from its store, with every stream and bucket replicated on all three:
// nothing is lost, and every saga finishes as planned. The node killed is
// in turn the saga log's stream leader and a random one.
func TestChaosNATSNodeKill(t *testing.T) {
	r := newRig(t, "NATS node kills",
		scenario{sagas: 60, every: 300 * time.Millisecond, faults: 2,
			gap: span(3*time.Second, 5*time.Second), down: span(15*time.Second, 15*time.Second), finish: 3 * time.Minute},
		scenario{sagas: 1000, every: 100 * time.Millisecond, faults: 4,
			gap: span(5*time.Second, 15*time.Second), down: span(time.Second, 10*time.Second), finish: 10 * time.Minute})
	cluster := startNATSCluster(t, r.ps, 3)
	r.connect(cluster.url())
	waitHealthy(t, r.js, 3, 2*time.Minute)
	r.startCoordinators(cluster.url(), 2, "-replicas", "3")
	r.startClient(2)
	r.chaos(func(i int) string {
		why := "the leader of " + streams.LogStream
		leader, err := streamLeader(r.js, streams.LogStream)
		victim := cluster.node(leader)
		if i%2 == 1 || err != nil || victim == nil {
			victim, why = cluster.nodes[r.rng.IntN(len(cluster.nodes))], "picked at random"
		}
		victim.kill()
		// Every other kill is a fast restart (after 1 s), which used to
		// stall the coordinators for tens of seconds.
		down := between(r.rng, r.cfg.down)
		if i%2 == 0 {
			down = time.Second
		}
		sleepUntil(context.Background(), time.Now().Add(down))
		cluster.restart(t, victim)
		// Another node may go down only once every stream has all its
		// replicas again.
		began := time.Now()
		waitHealthy(t, r.js, 3, 3*time.Minute)
		return fmt.Sprintf("killed NATS node %s (%s), restarted after %s, healthy %s later",
			victim.name, why, down.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	})
	// A participant's barrier write lost with a node lets its handler run
	// again (documented), so the barrier is not held to "once" here; the
	// effects, idempotent by key, still must be.
	rep := r.finish(false)
	r.logFigures(rep)
}

// A coordinator paused (SIGSTOP) for a while and then resumed (SIGCONT)
// with everything it had in memory gone stale: every saga still finishes
// once, as planned. Pauses alternate between long ones, past a lease's
// life (10 s by default), so that the others take its partitions over
// while it sleeps, and short ones, within it but at times past its
// consumers' ack wait (5 s), so that what it had taken goes to others.
func TestChaosPausedCoordinator(t *testing.T) {
	r := newRig(t, "coordinator pauses",
		scenario{sagas: 40, every: 300 * time.Millisecond, faults: 2,
			gap: span(time.Second, 2*time.Second), down: span(2*time.Second, 7*time.Second),
			longDown: span(15*time.Second, 16*time.Second), longEvery: 2, finish: 2 * time.Minute},
		scenario{sagas: 1000, every: 170 * time.Millisecond, faults: 12,
			gap: span(time.Second, 3*time.Second), down: span(time.Second, 8*time.Second),
			longDown: span(15*time.Second, 25*time.Second), longEvery: 2, finish: 10 * time.Minute})
	srv := natstest.RunServer(t)
	r.connect(srv.ClientURL())
	r.startCoordinators(srv.ClientURL(), 3)
	r.startClient(2)
	var pauses []pause
	r.chaos(func(i int) string {
		c := r.coords[r.rng.IntN(len(r.coords))]
		c.pause()
		from := time.Now()
		sleepUntil(context.Background(), from.Add(r.downFor(i)))
		c.resume()
		p := pause{coordinator: c.name, from: from, to: time.Now()}
		pauses = append(pauses, p)
		return fmt.Sprintf("paused %s for %s", c.name, p.to.Sub(p.from).Round(time.Millisecond))
	})
	rep := r.finish(true)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	writes, err := writesByCoordinator(ctx, r.cl, r.ids())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pauses {
		// Decisions it took just before the pause are appended after it;
		// without leases it then goes on driving every partition.
		after := writesBetween(writes, p.coordinator, p.to, p.to.Add(5*time.Second))
		t.Logf("%s, paused %s–%s: wrote %d events in the 5 s after it resumed",
			p.coordinator, p.from.Format("15:04:05.000"), p.to.Format("15:04:05.000"), len(after))
	}
	// A coordinator paused past its leases' life must not write, once it
	// resumes, under any lease it held before the pause: it may write again
	// only under a lease taken anew (a new epoch). Its decisions are stamped
	// with the time they were made, so one made before the pause and
	// appended after it (the append's optimistic concurrency makes that
	// safe) is not counted.
	for _, p := range pauses {
		if p.to.Sub(p.from) < leaseTTL+time.Second {
			continue
		}
		old := map[uint64]bool{}
		for _, w := range writes[p.coordinator] {
			if w.Time.Before(p.from) {
				old[w.Epoch] = true
			}
		}
		stale := 0
		for _, w := range writesBetween(writes, p.coordinator, p.to, time.Now().Add(time.Hour)) {
			if old[w.Epoch] {
				stale++
				if stale <= 5 {
					t.Errorf("%s resumed at %s after a pause past its lease and wrote %s to saga %s at %s under epoch %d, a lease from before the pause",
						p.coordinator, p.to.Format("15:04:05.000"), w.Type, w.SagaID, w.Time.Format("15:04:05.000"), w.Epoch)
				}
			}
		}
		t.Logf("%s, paused past its lease (%s): %d writes after it under a lease from before the pause",
			p.coordinator, p.to.Sub(p.from).Round(time.Millisecond), stale)
	}
	r.logFigures(rep)
}

// leaseTTL is the coordinators' lease TTL (the default: the chaos suite
// starts them without -lease-ttl).
const leaseTTL = 10 * time.Second

// pause is when a coordinator was paused.
type pause struct {
	coordinator string
	from, to    time.Time
}

// scenario sizes a test's workload and faults.
type scenario struct {
	sagas  int
	every  time.Duration    // between two saga starts
	faults int              // at least this many, and on until every saga is started
	gap    [2]time.Duration // before each fault
	down   [2]time.Duration // how long a killed process stays down, or a paused one stopped
	// longDown, for every longEvery-th fault (if longEvery > 0),
	// replaces down: long enough for a lease (10 s by default) to run
	// out.
	longDown  [2]time.Duration
	longEvery int
	// finish bounds how long the sagas may take to finish once the
	// chaos is over.
	finish time.Duration
}

// downFor is how long the i-th fault (from 0) keeps its process down.
func (r *rig) downFor(i int) time.Duration {
	if r.cfg.longEvery > 0 && i%r.cfg.longEvery == r.cfg.longEvery-1 {
		return between(r.rng, r.cfg.longDown)
	}
	return between(r.rng, r.cfg.down)
}

func span(lo, hi time.Duration) [2]time.Duration { return [2]time.Duration{lo, hi} }

// longMode reports whether JETSAGA_CHAOS=long asks for the long runs.
func longMode() bool { return os.Getenv("JETSAGA_CHAOS") == "long" }

// rig is one chaos test: its child processes, its connection, client,
// participants and ledger, and the figures it reports.
type rig struct {
	t      *testing.T
	what   string
	mode   string
	cfg    scenario
	seed   uint64
	rng    *rand.Rand
	ps     *procs
	url    string
	nc     *nats.Conn
	js     jetstream.JetStream
	cl     *client.Client
	fx     *ledger
	coords []*proc
	plans  []planned

	began, chaosEnded time.Time
	faults            []string
	w                 *workload
}

func newRig(t *testing.T, what string, short, long scenario) *rig {
	requireBinary(t)
	r := &rig{t: t, what: what, mode: "short", cfg: short, fx: newLedger(), began: time.Now()}
	if longMode() {
		r.mode, r.cfg = "long", long
	}
	r.seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("JETSAGA_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("JETSAGA_CHAOS_SEED=%q: %v", s, err)
		}
		r.seed = n
	}
	t.Logf("%s mode, seed %d (JETSAGA_CHAOS_SEED=%d replays its choices)", r.mode, r.seed, r.seed)
	r.rng = rand.New(rand.NewPCG(r.seed, r.seed^0x9e3779b97f4a7c15))
	r.plans = makePlans(r.rng, r.cfg.sagas)
	r.ps = newProcs(t)
	return r
}

// connect connects the test process to url (comma-separated URLs for a
// cluster).
func (r *rig) connect(url string) {
	r.url = url
	r.nc, r.js = natstest.Connect(r.t, url)
}

// startCoordinators starts n coordinators c1…cn as child processes; the
// first alone, since it creates the topology, then the others together.
func (r *rig) startCoordinators(url string, n int, extra ...string) {
	r.t.Helper()
	for i := 1; i <= n; i++ {
		name := "c" + strconv.Itoa(i)
		args := append([]string{"coordinator", "-server", url, "-name", name,
			"-partitions", strconv.Itoa(partitions), "-log-level", "info"}, extra...)
		r.coords = append(r.coords, r.ps.start(name, args...))
		if i == 1 {
			r.waitCoordinatorUp(r.coords[0])
		}
	}
	for _, c := range r.coords[1:] {
		r.waitCoordinatorUp(c)
	}
}

// waitCoordinatorUp waits until coordinator c answers on the status
// subject, which it does once it has started.
func (r *rig) waitCoordinatorUp(c *proc) {
	r.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if !c.running() {
			r.t.Fatalf("coordinator %s exited while starting:\n%s", c.name, c.tail(tailLines))
		}
		sts, err := gatherStatus(r.nc, time.Second, func(sts []coordStatus) bool { return hasNames(sts, c.name) })
		if err == nil && hasNames(sts, c.name) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("coordinator %s not answering after 90 s (%v):\n%s", c.name, err, c.tail(tailLines))
		}
		sleepUntil(context.Background(), time.Now().Add(100*time.Millisecond))
	}
}

// startClient starts the client and n participants, once the topology
// exists.
func (r *rig) startClient(participants int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.New(ctx, r.js)
	if err != nil {
		r.t.Fatal(err)
	}
	r.cl = cl
	startParticipants(r.t, r.ps, r.url, participants, r.fx)
}

// chaos starts the workload and injects faults (fault(i) injects the
// i-th and says what it did) at random intervals, at least cfg.faults of
// them and on until every saga is started.
func (r *rig) chaos(fault func(i int) string) {
	r.t.Helper()
	r.w = startWorkload(r.t, r.cl, r.js, r.plans, r.cfg.every)
	for i := 0; i < r.cfg.faults || !r.w.allStarted(); i++ {
		sleepUntil(context.Background(), time.Now().Add(between(r.rng, r.cfg.gap)))
		at, started := time.Since(r.began).Round(100*time.Millisecond), r.w.started.Load()
		what := fault(i)
		r.faults = append(r.faults, what)
		r.t.Logf("fault %d at %s, %d sagas started: %s", i+1, at, started, what)
	}
	r.w.wait(5 * time.Minute)
	r.chaosEnded = time.Now()
}

// finish waits for every saga to finish, checks the invariants, and
// waits until every partition is driven.
func (r *rig) finish(strictBarrier bool) report {
	r.t.Helper()
	waitFinished(r.t, r.cl, r.plans, r.cfg.finish)
	finished := time.Since(r.chaosEnded)
	rep := checkInvariants(r.t, r.cl, r.plans, r.fx, strictBarrier)
	var names []string
	for _, c := range r.coords {
		names = append(names, c.name)
	}
	sts := waitAllPartitionsOwned(r.t, r.nc, names, 2*time.Minute)
	r.t.Logf("every saga finished %s after the chaos ended; invariants checked and every partition driven %s later: %s",
		finished.Round(100*time.Millisecond), (time.Since(r.chaosEnded) - finished).Round(100*time.Millisecond), ownership(sts))
	var c coordStatus
	for _, st := range sts {
		c.Recovered += st.Recovered
		c.Conflicts += st.Conflicts
		c.Fenced += st.Fenced
		c.LeasesAcquired += st.LeasesAcquired
		c.LeasesLost += st.LeasesLost
	}
	r.t.Logf("coordinators' counters since they last started: %d sagas recovered, %d write races lost, %d appends fenced, %d leases acquired, %d lost",
		c.Recovered, c.Conflicts, c.Fenced, c.LeasesAcquired, c.LeasesLost)
	return rep
}

func (r *rig) ids() []string {
	ids := make([]string, len(r.plans))
	for i, p := range r.plans {
		ids[i] = p.id
	}
	return ids
}

// logFigures reports what the test ran.
func (r *rig) logFigures(rep report) {
	twice, planned := 0, map[string]int{}
	for _, p := range r.plans {
		if p.plan.Twice {
			twice++
		}
		planned[p.plan.wantStatus()]++
	}
	writes := countWrites(rep.writes)
	var perCoord []string
	for _, name := range slices.Sorted(maps.Keys(writes)) {
		perCoord = append(perCoord, fmt.Sprintf("%s %d", name, writes[name]))
	}
	r.t.Logf("%s, %s mode: %d sagas (%d started twice, %d starts sent again after an error): %d succeeded, %d unwound (planned %d and %d)",
		r.what, r.mode, len(r.plans), twice, r.w.retries.Load(),
		rep.statuses[client.StatusSucceeded], rep.statuses[client.StatusUnwound],
		planned[client.StatusSucceeded], planned[client.StatusUnwound])
	r.t.Logf("%d faults; %d log events (%d action and %d undo attempts failed and retried); action handlers run again for %d keys; events written: %s",
		len(r.faults), rep.events, rep.attemptsFailed, rep.undosFailed, rep.handlerReruns, strings.Join(perCoord, ", "))
	stall, at := longestStall(rep.writes)
	r.t.Logf("longest interval in which sagas were in flight and none advanced: %s, from %s (%s into the run; lease TTL %s)",
		stall.Round(time.Millisecond), at.Format("15:04:05.000"), at.Sub(r.began).Round(100*time.Millisecond), leaseTTL)
	r.t.Logf("took %s: workload %s, then %s to finish and check", time.Since(r.began).Round(100*time.Millisecond),
		r.w.took.Round(100*time.Millisecond), time.Since(r.chaosEnded).Round(100*time.Millisecond))
}
