//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/events"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/stall"
	"github.com/jetsaga/jetsaga/streams"
)

// readers bounds the sagas read at once when checking.
const readers = 8

// waitFinished waits until every saga has finished, polling the logs of
// those that have not. A saga stuck (waiting for an operator) or whose log
// does not fold fails the test at once.
func waitFinished(t *testing.T, cl *client.Client, plans []planned, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pending := plans
	last := map[string]string{}
	wait := 50 * time.Millisecond
	for {
		var mu sync.Mutex
		var still []planned
		var fatal []string
		forEach(pending, func(p planned) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := cl.Status(ctx, p.id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, client.ErrNotFound):
				still = append(still, p)
				last[p.id] = "no log yet"
			case errors.Is(err, machine.ErrIllegal):
				fatal = append(fatal, fmt.Sprintf("saga %d (%s): the log does not fold (conflicting writers?): %v", p.plan.N, p.id, err))
			case err != nil:
				still = append(still, p) // a NATS node down, say: read again
				last[p.id] = err.Error()
			case s.Status == client.StatusStuck:
				fatal = append(fatal, fmt.Sprintf("saga %d (%s, plan %+v) is stuck: %s", p.plan.N, p.id, p.plan, describe(s)))
			case !s.Finished():
				still = append(still, p)
				last[p.id] = describe(s)
			}
		})
		if len(fatal) > 0 {
			t.Fatalf("%d sagas cannot finish:\n%s", len(fatal), clip(fatal, 20))
		}
		if len(still) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, p := range still {
				lines = append(lines, fmt.Sprintf("saga %d (%s, plan %+v): %s", p.plan.N, p.id, p.plan, last[p.id]))
			}
			t.Fatalf("%d of %d sagas not finished %s after the chaos ended:\n%s", len(still), len(plans), timeout, clip(lines, 20))
		}
		pending = still
		sleepUntil(context.Background(), time.Now().Add(wait))
		wait = min(2*wait, time.Second)
	}
}

// forEach calls f for every plan, a few at a time.
func forEach(plans []planned, f func(planned)) {
	sem := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for _, p := range plans {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(p)
		})
	}
	wg.Wait()
}

// clip joins lines, at most n of them.
func clip(lines []string, n int) string {
	sort.Strings(lines)
	if len(lines) > n {
		lines = append(lines[:n:n], fmt.Sprintf("… and %d more", len(lines)-n))
	}
	return "\t" + strings.Join(lines, "\n\t")
}

// report is what the invariant check saw, for the test's figures.
type report struct {
	statuses       map[string]int
	events         int
	attemptsFailed int // node.attempt_failed: retries of actions
	undosFailed    int // node.undo_attempt_failed: retries of undos
	handlerReruns  int // keys whose action handler ran more than once
	writes         map[string][]write
}

// checkInvariants reads every saga's log after all have finished and
// checks what no fault may break:
//
//   - the saga reached exactly one terminal state: one saga.finished event,
//     the last of its log, after exactly one saga.created;
//   - its log folds (client.Status; an *IllegalEventError would mean two
//     writers conflicting) and its event ids are consecutive;
//   - every event was written by a coordinator;
//   - the outcome is the planned one: unwound, from the planned node,
//     if a permanent failure was planned, else succeeded;
//   - the participants' ledger: no effect applied twice (nor after its
//     undo); a succeeded saga's effects all live, an unwound saga's none.
//     With strictBarrier, no action handler ran twice for one key either:
//     the SDK's barrier guarantees that as long as its KV writes get
//     through (a NATS node dying can defeat it: see participant's doc).
func checkInvariants(t *testing.T, cl *client.Client, plans []planned, fx *ledger, strictBarrier bool) report {
	t.Helper()
	var mu sync.Mutex
	var problems []string
	rep := report{statuses: map[string]int{}, writes: map[string][]write{}}
	forEach(plans, func(p planned) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var probs []string
		bad := func(format string, args ...any) {
			probs = append(probs, fmt.Sprintf("saga %d (%s, plan %+v): ", p.plan.N, p.id, p.plan)+fmt.Sprintf(format, args...))
		}
		evs, s, err := readSettled(ctx, cl, p.id)
		var illegal *machine.IllegalEventError
		switch {
		case errors.As(err, &illegal):
			bad("log does not fold, conflicting writers? %v", err)
		case err != nil:
			bad("read: %v", err)
		case s.Status != p.plan.wantStatus():
			bad("ended %s, want %s: %s", s.Status, p.plan.wantStatus(), describe(s))
		case s.Status == client.StatusUnwound && s.FailedNode != p.plan.Fail:
			bad("unwound from node %q, want %q: %s", s.FailedNode, p.plan.Fail, describe(s))
		}
		created, finished, attemptsFailed, undosFailed := 0, 0, 0, 0
		// Fencing: every event carries its writer's lease epoch, and along
		// the log it never decreases (a decrease is a coordinator writing
		// after a newer owner of the partition had).
		var lastEpoch uint64
		lastWriter := ""
		for i, e := range evs {
			if e.Epoch == 0 {
				bad("event %s by %s carries no lease epoch", e.ID, e.Source)
			} else if e.Epoch < lastEpoch {
				bad("event %s by %s at epoch %d follows an event by %s at epoch %d: two drivers", e.ID, e.Source, e.Epoch, lastWriter, lastEpoch)
			}
			lastEpoch, lastWriter = max(lastEpoch, e.Epoch), e.Source
			if want := events.LogEventID(p.id, i); e.ID != want {
				bad("event %d has id %q, want %q", i, e.ID, want)
			}
			if !strings.HasPrefix(e.Source, events.SourceCoordinator+"/") {
				bad("event %s has source %q, not a coordinator's", e.ID, e.Source)
			}
			switch e.Type() {
			case events.TypeSagaCreated:
				created++
			case events.TypeSagaFinished:
				finished++
				if i != len(evs)-1 {
					bad("saga.finished is event %d of %d, not the last", i, len(evs))
				}
			case events.TypeNodeAttemptFailed:
				attemptsFailed++
			case events.TypeUndoAttemptFailed:
				undosFailed++
			}
		}
		if created != 1 || finished != 1 {
			bad("%d saga.created and %d saga.finished events, want one each", created, finished)
		}

		reruns := 0
		fxs := fx.saga(p.id)
		for _, n := range nodeNames {
			e := fxs[n]
			if e.applied > 1 {
				bad("effect of %s applied %d times (again after its undo)", n, e.applied)
			}
			if e.runs > 1 {
				reruns++
				if strictBarrier {
					bad("action handler of %s ran %d times: the barrier let a repeat through", n, e.runs)
				}
			}
			switch want := p.plan.wantStatus(); {
			case want == client.StatusSucceeded && (!e.live || e.applied != 1):
				bad("succeeded, but the effect of %s is %+v", n, e)
			case want == client.StatusUnwound && e.live:
				bad("unwound, but the effect of %s is live: %+v", n, e)
			}
		}

		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, probs...)
		if s != nil {
			rep.statuses[s.Status]++
		}
		rep.events += len(evs)
		rep.attemptsFailed += attemptsFailed
		rep.undosFailed += undosFailed
		rep.handlerReruns += reruns
		for _, w := range writesOf(p.id, evs) {
			rep.writes[w.Coordinator] = append(rep.writes[w.Coordinator], w)
		}
	})
	if len(problems) > 0 {
		t.Errorf("%d invariant violations:\n%s", len(problems), clip(problems, 30))
	}
	return rep
}

// readSettled reads the log and the status (the log folded by
// client.Status) of a saga waitFinished saw finished. On a replicated
// stream a read may be served by a follower a little behind the leader, so
// a saga that does not show as finished yet (or whose two reads differ) is
// read again, for a while.
func readSettled(ctx context.Context, cl *client.Client, id string) ([]client.LogEvent, *client.Saga, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := cl.Events(ctx, id)
		if err != nil {
			return nil, nil, fmt.Errorf("events: %w", err)
		}
		s, err := cl.Status(ctx, id)
		if err != nil {
			return evs, nil, err
		}
		// Two reads: the second may have seen more of the log.
		if s.Finished() && len(s.Timeline) == len(evs) || time.Now().After(deadline) {
			return evs, s, nil
		}
		sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
	}
}

// write is one event a coordinator appended to a saga's log.
type write struct {
	// Coordinator is the writer's name, from the event's source
	// /jetsaga/coordinator/<name>.
	Coordinator string
	SagaID      string
	// Seq is the stream sequence of the log message the event came in.
	Seq  uint64
	Type events.Type
	// Time is when the coordinator decided the event (its clock).
	Time time.Time
	// Epoch is the writer's lease epoch for the saga's partition.
	Epoch uint64
}

func writesOf(id string, evs []client.LogEvent) []write {
	out := make([]write, 0, len(evs))
	for _, e := range evs {
		name := strings.TrimPrefix(e.Source, events.SourceCoordinator+"/")
		out = append(out, write{Coordinator: name, SagaID: id, Seq: e.Seq, Type: e.Type(), Time: e.Time, Epoch: e.Epoch})
	}
	return out
}

// writesByCoordinator reads the log of every saga in ids and returns the
// events each coordinator wrote, by coordinator name: who wrote what, and
// when. With partition leases, a coordinator paused past its leases' end
// must write nothing to the sagas of the partitions it lost; this is the
// record to check that against.
func writesByCoordinator(ctx context.Context, cl *client.Client, ids []string) (map[string][]write, error) {
	out := map[string][]write{}
	for _, id := range ids {
		evs, err := cl.Events(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("saga %s: %w", id, err)
		}
		for _, w := range writesOf(id, evs) {
			out[w.Coordinator] = append(out[w.Coordinator], w)
		}
	}
	return out, nil
}

// longestStall is the longest interval in which sagas were in flight and
// none advanced (stall.Longest), from every event written.
func longestStall(ws map[string][]write) (time.Duration, time.Time) {
	var evs []stall.Event
	for _, w := range ws {
		for _, e := range w {
			evs = append(evs, stall.Event{SagaID: e.SagaID, Time: e.Time})
		}
	}
	return stall.Longest(evs)
}

// countWrites is the number of events each coordinator wrote.
func countWrites(ws map[string][]write) map[string]int {
	out := map[string]int{}
	for name, w := range ws {
		out[name] = len(w)
	}
	return out
}

// writesBetween are the events coordinator name wrote, by its clock, in
// [from, to).
func writesBetween(ws map[string][]write, name string, from, to time.Time) []write {
	var out []write
	for _, w := range ws[name] {
		if !w.Time.Before(from) && w.Time.Before(to) {
			out = append(out, w)
		}
	}
	return out
}

// coordStatus is the part of a coordinator's status (as it answers on
// streams.StatusSubject) the tests read. Fields a coordinator does not
// report read as zero.
type coordStatus struct {
	Name       string `json:"name"`
	Partitions []struct {
		ID int `json:"id"`
		// Epoch is the partition's lease revision: 0 when the
		// coordinator drives it without a lease.
		Epoch uint64 `json:"epoch"`
	} `json:"partitions"`
	Recovered      int64 `json:"sagas_recovered"`
	Conflicts      int64 `json:"write_conflicts"`
	Fenced         int64 `json:"appends_fenced"`
	LeasesAcquired int64 `json:"leases_acquired"`
	LeasesLost     int64 `json:"leases_lost"`
}

// gatherStatus asks every coordinator for its status and returns the
// replies that come within window, or sooner once enough says they are
// enough.
func gatherStatus(nc *nats.Conn, window time.Duration, enough func([]coordStatus) bool) ([]coordStatus, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := nc.PublishRequest(streams.StatusSubject, inbox, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var out []coordStatus
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) || (err != nil && ctx.Err() != nil) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var st coordStatus
		if err := json.Unmarshal(m.Data, &st); err != nil {
			return nil, fmt.Errorf("a reply on %s is not a coordinator's status: %w", streams.StatusSubject, err)
		}
		out = append(out, st)
		if enough != nil && enough(out) {
			return out, nil
		}
	}
}

// hasNames reports whether statuses came from every coordinator named.
func hasNames(sts []coordStatus, names ...string) bool {
	seen := map[string]bool{}
	for _, st := range sts {
		seen[st.Name] = true
	}
	for _, n := range names {
		if !seen[n] {
			return false
		}
	}
	return true
}

// waitAllPartitionsOwned waits until every coordinator named answers and,
// between them, they drive every partition; with leases (a partition
// reported with an epoch), each partition by exactly one of them. It
// returns their statuses. Without leases every coordinator drives every
// partition; with leases, after a failover it takes up to a lease's life
// for every partition to be owned again.
func waitAllPartitionsOwned(t *testing.T, nc *nats.Conn, names []string, timeout time.Duration) []coordStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sts, err := gatherStatus(nc, 2*time.Second, func(sts []coordStatus) bool { return hasNames(sts, names...) })
		problem := err
		if problem == nil {
			problem = ownershipProblem(sts, names)
		}
		if problem == nil {
			return sts
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v (statuses: %s)", timeout, problem, ownership(sts))
		}
		sleepUntil(context.Background(), time.Now().Add(200*time.Millisecond))
	}
}

// ownershipProblem says what keeps the partitions from being owned as
// they should be, or nil.
func ownershipProblem(sts []coordStatus, names []string) error {
	if !hasNames(sts, names...) {
		var answered []string
		for _, st := range sts {
			answered = append(answered, st.Name)
		}
		return fmt.Errorf("coordinators %v answered, want %v", answered, names)
	}
	owners := map[int][]string{}
	leased := false
	for _, st := range sts {
		for _, p := range st.Partitions {
			owners[p.ID] = append(owners[p.ID], st.Name)
			leased = leased || p.Epoch > 0
		}
	}
	var missing, shared []int
	for p := range partitions {
		switch n := len(owners[p]); {
		case n == 0:
			missing = append(missing, p)
		case n > 1 && leased:
			shared = append(shared, p)
		}
	}
	if len(missing) > 0 || len(shared) > 0 {
		return fmt.Errorf("partitions nobody drives: %v; driven by several despite leases: %v", missing, shared)
	}
	return nil
}

// ownership writes who drives which partitions, for the log.
func ownership(sts []coordStatus) string {
	var parts []string
	for _, st := range sts {
		var ps []int
		leased := 0
		for _, p := range st.Partitions {
			ps = append(ps, p.ID)
			if p.Epoch > 0 {
				leased++
			}
		}
		slices.Sort(ps)
		parts = append(parts, fmt.Sprintf("%s drives %d %v (%d leased)", st.Name, len(ps), ps, leased))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
