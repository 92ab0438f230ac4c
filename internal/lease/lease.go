// Package lease shares a fixed set of partitions among the coordinators
// that are running, with leases in the KV bucket jetsaga_leases.
//
// Every coordinator (a member) keeps a heartbeat key "member.<name>" alive
// with a per-message TTL. Each partition p has at most one lease,
// "partition.<p>", created with a per-key TTL and renewed by publishing to
// the key with the expected revision and a Nats-TTL header (kv.Update
// would drop the TTL). The lease's revision is the holder's epoch for the
// partition.
//
// Which member should hold a partition is decided by rendezvous hashing
// with bounded load over the live members: each partition goes to its
// highest-ranked member that has fewer than ceil(P/M) partitions. Every
// member computes the same assignment, so when one joins or leaves only
// some partitions move, each member acts only on its own share, and nobody
// stampedes. A partition
// left free for two rounds is taken by whoever sees it first (liveness if
// the preferred member cannot take it); creation is compare-and-set, so
// one wins.
//
// A lease is trusted locally only until the time its last renewal was sent
// plus the TTL, which is never later than the server's expiry: a member that
// cannot renew in time (partitioned, paused) stops driving the partition at
// once, before anyone else can hold it. Correctness does not rest on this:
// every append to a saga log is conditional on the last sequence the writer
// saw, so a stale owner can never interleave writes with a new one.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/startstop"
	"github.com/jetsaga/jetsaga/streams"
)

// DefaultTTL is the lease TTL when Config.TTL is zero.
const DefaultTTL = 10 * time.Second

// handoffsPerRound bounds the partitions a member hands off in one round
// when a member joins, so rebalancing is gradual.
const handoffsPerRound = 4

// Config configures a Keeper.
type Config struct {
	// Namespace is the deployment's (its lease bucket).
	Namespace streams.Namespace
	// Name is the member's name, unique among running coordinators.
	Name string
	// Partitions is the topology's partition count.
	Partitions int
	// TTL is how long a lease and a heartbeat last without renewal; they are
	// renewed every TTL/3. At least 1s (the server's TTL resolution).
	// Default: DefaultTTL.
	TTL time.Duration
	// Logger; default: discard.
	Logger *slog.Logger
	// Acquire is called, on the keeper's goroutine, when the member takes
	// partition p with the given epoch; it should start driving it. An
	// error hands the partition back. It must return at once (start the
	// work in the background): the goroutine renews every lease, and must
	// never wait on the data path.
	Acquire func(p int, epoch uint64) error
	// Lose is called, on the keeper's goroutine, when the member must stop
	// driving p (lease lost or about to expire, or handed off). Owns is
	// false for p from then on, so the work is fenced already; Lose must
	// return at once and let the work drain in the background.
	Lose func(p int)
	// Healthy, if set, is asked before each round whether the member can
	// do its work (its data connection is up, say). While it reports an
	// error the member neither renews nor takes leases nor sends its
	// heartbeat, so its leases lapse and other members take over: leases
	// renewed on a connection of their own must not outlive the path the
	// work goes through.
	Healthy func() error
}

// Lease is a partition held by this member.
type Lease struct {
	Partition  int       `json:"partition"`
	Epoch      uint64    `json:"epoch"`
	ValidUntil time.Time `json:"valid_until"`
}

// Holder is a partition's lease as seen in the bucket.
type Holder struct {
	Partition int    `json:"partition"`
	Member    string `json:"member"`
	Epoch     uint64 `json:"epoch"`
}

type leaseValue struct {
	Member   string `json:"member"`
	Instance string `json:"instance"`
}

// Keeper keeps this member's heartbeat and leases.
type Keeper struct {
	cfg      Config
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	instance string
	logger   *slog.Logger

	mu    sync.Mutex
	held  map[int]*held
	free  map[int]int // partition → rounds seen free
	stats Stats
	// draining: the member has left on purpose (Drain): no heartbeat, no
	// lease held or taken, until Undrain.
	draining bool

	// life runs Start and Stop and owns the renewal loop.
	life startstop.Lifecycle
}

type held struct {
	epoch      uint64 // the revision that took the lease
	rev        uint64 // the latest revision (renewals move it)
	validUntil time.Time
}

// Stats count the keeper's work since start.
type Stats struct {
	Acquired int64 `json:"leases_acquired"`
	Lost     int64 `json:"leases_lost"`
	Released int64 `json:"leases_released"`
}

// New returns a keeper; Start runs it.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Keeper, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("lease: TTL %s is under 1s", cfg.TTL)
	}
	if cfg.Name == "" || cfg.Partitions < 1 || cfg.Acquire == nil || cfg.Lose == nil {
		return nil, errors.New("lease: Name, Partitions, Acquire and Lose are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := js.KeyValue(ctx, cfg.Namespace.LeaseBucket())
	if err != nil {
		return nil, fmt.Errorf("lease: bucket %s: %w", cfg.Namespace.LeaseBucket(), err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Keeper{cfg: cfg, js: js, kv: kv, instance: hex.EncodeToString(b), logger: cfg.Logger,
		held: map[int]*held{}, free: map[int]int{}}, nil
}

// Start registers the member, takes what it can at once, and keeps going
// in the background every TTL/3. If the first heartbeat fails, Start
// fails and nothing runs; Stop then returns at once.
func (k *Keeper) Start(ctx context.Context) error {
	return k.life.Start(ctx, func(ctx context.Context) error {
		if err := k.heartbeat(ctx); err != nil {
			return err
		}
		k.round(ctx)
		k.life.Go(k.loop)
		return nil
	})
}

func (k *Keeper) loop(ctx context.Context) {
	t := time.NewTicker(k.cfg.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, k.cfg.TTL/3)
			k.round(rctx)
			cancel()
		}
	}
}

// Stop ends the background work, then releases every lease (after Lose for
// each, so nothing is driven without one) and the heartbeat, so other
// members take over at their next round instead of after the TTL. Stop is
// idempotent, and returns at once after a failed Start.
func (k *Keeper) Stop(ctx context.Context) {
	_ = k.life.Stop(ctx, func(ctx context.Context) {
		k.life.Cancel()
		_ = k.life.Wait(ctx)
		k.leave(ctx)
	})
}

// leave releases every lease (after Lose for each, so nothing is driven
// without one) and the heartbeat.
func (k *Keeper) leave(ctx context.Context) {
	k.mu.Lock()
	parts := make([]int, 0, len(k.held))
	for p := range k.held {
		parts = append(parts, p)
	}
	k.mu.Unlock()
	// All at once: each waits for its partition to drain, which takes up
	// to the drain timeout when NATS is unreachable.
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { k.release(ctx, p) })
	}
	wg.Wait()
	_ = k.kv.Purge(ctx, memberKey(k.cfg.Name))
}

// Drain hands every lease off and leaves the membership, so the other
// members take the partitions over at their next round; the keeper then
// holds nothing until Undrain. For maintenance: the process stays up.
func (k *Keeper) Drain(ctx context.Context) {
	k.mu.Lock()
	k.draining = true
	k.mu.Unlock()
	k.leave(ctx)
}

// Undrain rejoins the membership: partitions come back at the following
// rounds, as to a new member.
func (k *Keeper) Undrain() {
	k.mu.Lock()
	k.draining = false
	k.mu.Unlock()
}

// Draining reports whether the keeper has been drained.
func (k *Keeper) Draining() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.draining
}

// Owns reports the epoch of p's lease (the revision that took it) if this
// member holds it and may still trust it.
func (k *Keeper) Owns(p int) (uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.held[p]
	if !ok || !time.Now().Before(h.validUntil) {
		return 0, false
	}
	return h.epoch, true
}

// Leases lists the leases this member holds.
func (k *Keeper) Leases() []Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Lease, 0, len(k.held))
	for p, h := range k.held {
		out = append(out, Lease{Partition: p, Epoch: h.rev, ValidUntil: h.validUntil})
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Partition - b.Partition })
	return out
}

// Stats returns the keeper's counters.
func (k *Keeper) Stats() Stats {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stats
}

func memberKey(name string) string { return "member." + name }
func partitionKey(p int) string    { return "partition." + strconv.Itoa(p) }

// publishTTL writes a key with a TTL, with an expected revision unless rev
// is 0, and returns the new revision.
func (k *Keeper) publishTTL(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	m := nats.NewMsg("$KV." + k.cfg.Namespace.LeaseBucket() + "." + key)
	m.Data = value
	m.Header.Set(jetstream.MsgTTLHeader, k.cfg.TTL.String())
	if rev > 0 {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	}
	ack, err := k.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func (k *Keeper) heartbeat(ctx context.Context) error {
	b, _ := json.Marshal(leaseValue{Member: k.cfg.Name, Instance: k.instance})
	if _, err := k.publishTTL(ctx, memberKey(k.cfg.Name), b, 0); err != nil {
		return fmt.Errorf("lease: heartbeat: %w", err)
	}
	return nil
}

// round is one pass: heartbeat, renew, hand off, take.
func (k *Keeper) round(ctx context.Context) {
	if k.Draining() {
		return
	}
	if k.cfg.Healthy != nil {
		if err := k.cfg.Healthy(); err != nil {
			k.logger.Warn("member cannot work: not renewing its leases", "error", err)
			k.loseExpiring(nil)
			return
		}
	}
	if err := k.heartbeat(ctx); err != nil {
		k.logger.Warn("lease heartbeat failed", "error", err)
	}
	k.renew(ctx)
	members, owners, err := k.view(ctx)
	if err != nil {
		k.logger.Warn("cannot list members and leases", "error", err)
		return
	}
	// Hand off at most one partition a round to the member that should
	// have it, so a joining member does not cause a burst of handoffs.
	want := assign(members, k.cfg.Partitions)
	k.mu.Lock()
	var giveUp []int
	for p := range k.held {
		if want[p] != k.cfg.Name {
			giveUp = append(giveUp, p)
		}
	}
	k.mu.Unlock()
	slices.Sort(giveUp)
	for _, p := range giveUp[:min(len(giveUp), handoffsPerRound)] {
		k.release(ctx, p)
	}
	for p := range k.cfg.Partitions {
		if _, mine := k.heldRev(p); mine {
			continue
		}
		if _, taken := owners[p]; taken {
			k.free[p] = 0
			continue
		}
		k.free[p]++
		if want[p] == k.cfg.Name || k.free[p] > 2 {
			k.acquire(ctx, p)
		}
	}
}

func (k *Keeper) heldRev(p int) (uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.held[p]
	if !ok {
		return 0, false
	}
	return h.rev, true
}

// renew renews every held lease (published together); a lease that cannot
// be renewed, or is about to run out, is given up at once. The lock is
// never held across a publish: Owns, checked before every append, must not
// wait on the network.
func (k *Keeper) renew(ctx context.Context) {
	type pending struct {
		p    int
		f    jetstream.PubAckFuture
		sent time.Time
	}
	k.mu.Lock()
	revs := make(map[int]uint64, len(k.held))
	for p, h := range k.held {
		revs[p] = h.rev
	}
	k.mu.Unlock()
	var ps []pending
	b, _ := json.Marshal(leaseValue{Member: k.cfg.Name, Instance: k.instance})
	for p, rev := range revs {
		m := nats.NewMsg("$KV." + k.cfg.Namespace.LeaseBucket() + "." + partitionKey(p))
		m.Data = b
		m.Header.Set(jetstream.MsgTTLHeader, k.cfg.TTL.String())
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
		sent := time.Now()
		f, err := k.js.PublishMsgAsync(m)
		if err != nil {
			continue // checked against validUntil below
		}
		ps = append(ps, pending{p, f, sent})
	}
	renewed := map[int]bool{}
	for _, x := range ps {
		select {
		case ack := <-x.f.Ok():
			k.mu.Lock()
			if h, ok := k.held[x.p]; ok {
				h.rev, h.validUntil = ack.Sequence, x.sent.Add(k.cfg.TTL)
			}
			k.mu.Unlock()
			renewed[x.p] = true
		case err := <-x.f.Err():
			if k.stillOurs(ctx, x.p, err) {
				continue
			}
			k.logger.Warn("lease renewal refused; giving up the partition", "partition", x.p, "error", err)
			k.lose(x.p)
		case <-ctx.Done():
		}
	}
	k.loseExpiring(renewed)
}

// stillOurs handles a renewal refused because the key has moved on since
// the revision the keeper knew: if it moved on by a renewal of this very
// instance whose answer was lost (a leader election, a timeout), the lease
// is still ours, at the key's present revision; the next round renews it
// from there. It reports whether it was so.
func (k *Keeper) stillOurs(ctx context.Context, p int, err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		return false
	}
	e, gerr := k.kv.Get(ctx, partitionKey(p))
	if gerr != nil {
		return false
	}
	var v leaseValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Member != k.cfg.Name || v.Instance != k.instance {
		return false
	}
	k.mu.Lock()
	h, ok := k.held[p]
	if ok {
		h.rev = e.Revision()
	}
	k.mu.Unlock()
	if ok {
		k.logger.Info("lease renewal answered late; the lease is still ours", "partition", p, "revision", e.Revision())
	}
	return ok
}

// loseExpiring gives up the leases not renewed this round that are
// trustworthy for less than a round more.
func (k *Keeper) loseExpiring(renewed map[int]bool) {
	k.mu.Lock()
	var expiring []int
	for p, h := range k.held {
		if !renewed[p] && time.Until(h.validUntil) < k.cfg.TTL/3 {
			expiring = append(expiring, p)
		}
	}
	k.mu.Unlock()
	for _, p := range expiring {
		k.logger.Warn("lease could not be renewed in time; giving up the partition", "partition", p)
		k.lose(p)
	}
}

// view lists the live members and the partitions' holders.
func (k *Keeper) view(ctx context.Context) ([]string, map[int]Holder, error) {
	owners := map[int]Holder{}
	var members []string
	lister, err := k.kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil, err
	}
	if lister != nil {
		keys, err := streams.Keys(ctx, lister)
		if err != nil {
			return nil, nil, err
		}
		for _, key := range keys {
			switch {
			case strings.HasPrefix(key, "member."):
				members = append(members, strings.TrimPrefix(key, "member."))
			case strings.HasPrefix(key, "partition."):
				p, err := strconv.Atoi(strings.TrimPrefix(key, "partition."))
				if err == nil {
					owners[p] = Holder{Partition: p}
				}
			}
		}
	}
	if !slices.Contains(members, k.cfg.Name) {
		members = append(members, k.cfg.Name)
	}
	slices.Sort(members)
	return members, owners, nil
}

// Holders reads every partition's lease from namespace ns's bucket, for
// status.
func Holders(ctx context.Context, js jetstream.JetStream, ns streams.Namespace) ([]Holder, error) {
	kv, err := js.KeyValue(ctx, ns.LeaseBucket())
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, "partition.*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := streams.Keys(ctx, lister)
	if err != nil {
		return nil, err
	}
	var out []Holder
	for _, key := range keys {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var v leaseValue
		_ = json.Unmarshal(e.Value(), &v)
		p, _ := strconv.Atoi(strings.TrimPrefix(key, "partition."))
		out = append(out, Holder{Partition: p, Member: v.Member, Epoch: e.Revision()})
	}
	slices.SortFunc(out, func(a, b Holder) int { return a.Partition - b.Partition })
	return out, nil
}

// assign maps each partition to the member that should hold it: its
// highest-ranked member (rendezvous hash) among those with fewer than
// ceil(P/M) partitions so far.
func assign(members []string, partitions int) map[int]string {
	out := make(map[int]string, partitions)
	if len(members) == 0 {
		return out
	}
	limit := (partitions + len(members) - 1) / len(members)
	load := map[string]int{}
	ranked := make([]string, len(members))
	for p := range partitions {
		copy(ranked, members)
		slices.SortFunc(ranked, func(a, b string) int {
			sa, sb := score(a, p), score(b, p)
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return strings.Compare(a, b)
		})
		for _, m := range ranked {
			if load[m] < limit {
				out[p] = m
				load[m]++
				break
			}
		}
	}
	return out
}

// score ranks member m for partition p.
func score(m string, p int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(m))
	h.Write([]byte{'#'})
	h.Write([]byte(strconv.Itoa(p)))
	return mix(h.Sum64())
}

// mix spreads FNV's output (splitmix64's finalizer), so scores of similar
// names do not cluster.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (k *Keeper) acquire(ctx context.Context, p int) {
	if k.Draining() {
		return
	}
	b, _ := json.Marshal(leaseValue{Member: k.cfg.Name, Instance: k.instance})
	sent := time.Now()
	rev, err := k.kv.Create(ctx, partitionKey(p), b, jetstream.KeyTTL(k.cfg.TTL))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			k.logger.Warn("cannot take partition", "partition", p, "error", err)
		}
		return
	}
	k.mu.Lock()
	k.held[p] = &held{epoch: rev, rev: rev, validUntil: sent.Add(k.cfg.TTL)}
	k.free[p] = 0
	k.stats.Acquired++
	k.mu.Unlock()
	k.logger.Info("partition acquired", "partition", p, "epoch", rev)
	if err := k.cfg.Acquire(p, rev); err != nil {
		k.logger.Error("cannot drive acquired partition; handing it back", "partition", p, "error", err)
		k.release(ctx, p)
	}
}

// lose stops driving p and forgets the lease (it expires on its own).
func (k *Keeper) lose(p int) {
	k.mu.Lock()
	_, ok := k.held[p]
	delete(k.held, p)
	if ok {
		k.stats.Lost++
	}
	k.mu.Unlock()
	if ok {
		k.cfg.Lose(p)
	}
}

// release stops driving p, then deletes its lease so another member can
// take it at once.
func (k *Keeper) release(ctx context.Context, p int) {
	k.mu.Lock()
	h, ok := k.held[p]
	delete(k.held, p)
	if ok {
		k.stats.Released++
	}
	k.mu.Unlock()
	if !ok {
		return
	}
	k.cfg.Lose(p)
	if err := k.kv.Delete(ctx, partitionKey(p), jetstream.LastRevision(h.rev)); err != nil {
		k.logger.Warn("cannot release partition; it will expire", "partition", p, "error", err)
		return
	}
	k.logger.Info("partition handed off", "partition", p)
}
