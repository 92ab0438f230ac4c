package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/machine"
	"github.com/jetsaga/jetsaga/internal/sagalog"
	"github.com/jetsaga/jetsaga/streams"
)

// verification is replay's check that the log's fold is what the engine
// holds: the state of the coordinator driving the saga, or, when none has
// it loaded, the saga index's summary.
type verification struct {
	// Against is what the fold was compared with: "coordinator", "index",
	// or "" when there was nothing to compare with.
	Against     string `json:"against"`
	Coordinator string `json:"coordinator,omitempty"`
	// Seq is the log message the comparison was made at.
	Seq        uint64   `json:"seq,omitempty"`
	Verified   bool     `json:"verified"`
	Mismatches []string `json:"mismatches,omitempty"`
	// Note says why the coordinator was not asked or did not answer.
	Note string `json:"note,omitempty"`
}

// verifyReplay asks the coordinator driving r's saga for its state and
// compares it with the fold of the log up to the same message; without an
// answer it compares the status with the saga index. wait bounds each.
func verifyReplay(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, r *replayed, wait time.Duration) *verification {
	id := r.state.SagaID
	v := &verification{}
	if r.state.Status.Finished() {
		v.Note = "the saga has finished, so no coordinator holds it"
	} else {
		st, note, err := askCoordinator(ctx, nc, r.ns, id, wait)
		switch {
		case err != nil:
			v.Note = "cannot ask the coordinators: " + err.Error()
		case st == nil:
			v.Note = note
		default:
			return verifyAgainst(ctx, js, r, st)
		}
	}
	return verifyIndex(ctx, js, r, v, wait)
}

// askCoordinator requests a saga's state. No state and a note mean no
// coordinator has the saga loaded.
func askCoordinator(ctx context.Context, nc *nats.Conn, ns streams.Namespace, id string, wait time.Duration) (*coordinator.SagaState, string, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, ns.SagaStateSubject(id), nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, "no coordinator is running", nil
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Sprintf("no coordinator answered within %s: none has the saga loaded (is the coordinator of its partition running?)", wait), nil
	case err != nil:
		return nil, "", err
	}
	var st coordinator.SagaState
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return nil, "", fmt.Errorf("the answer on %s is not a saga state: %w", ns.SagaStateSubject(id), err)
	}
	return &st, "", nil
}

// verifyAgainst compares the coordinator's state with the fold of the log
// up to the last message the coordinator knows, reading what the log has
// gained since replay read it.
func verifyAgainst(ctx context.Context, js jetstream.JetStream, r *replayed, st *coordinator.SagaState) *verification {
	v := &verification{Against: "coordinator", Coordinator: st.Coordinator, Seq: st.LastSeq}
	entries := r.entries
	last := uint64(0)
	if n := len(entries); n > 0 {
		last = entries[n-1].Seq
	}
	if st.LastSeq > last {
		more, err := streams.NewLogIn(js, r.ns).Read(ctx, r.state.SagaID, last)
		if err != nil {
			v.Mismatches = append(v.Mismatches, fmt.Sprintf("cannot read the log past message #%d: %v", last, err))
			return v
		}
		for _, en := range more {
			m, err := sagalog.Decode(r.state.SagaID, en)
			if err != nil {
				v.Mismatches = append(v.Mismatches, err.Error())
				return v
			}
			entries = append(entries, m)
		}
	}
	fold, known := machine.New(r.state.SagaID), false
	for _, en := range entries {
		if en.Seq > st.LastSeq {
			break
		}
		if err := fold.ApplyAll(en.Events); err != nil {
			v.Mismatches = append(v.Mismatches, fmt.Sprintf("log message %d: %v", en.Seq, err))
			return v
		}
		known = known || en.Seq == st.LastSeq
	}
	if !known {
		v.Mismatches = append(v.Mismatches, fmt.Sprintf("the coordinator's last log message is #%d, which the saga's log does not have", st.LastSeq))
	}
	if n := len(entries); n > 0 && entries[n-1].Seq > st.LastSeq {
		v.Mismatches = append(v.Mismatches, fmt.Sprintf("the log has messages after #%d that the coordinator does not know (another writer?)", st.LastSeq))
	}
	v.Mismatches = append(v.Mismatches, compareStates(fold, st)...)
	v.Verified = len(v.Mismatches) == 0
	return v
}

// compareStates lists how a coordinator's state of a saga differs from the
// fold of its log (nil when they are equal): status, event count, and each
// node's state field by field.
func compareStates(fold *machine.State, st *coordinator.SagaState) []string {
	var out []string
	if fold.Status != st.Status {
		out = append(out, fmt.Sprintf("status: %s in the coordinator, %s in the log", st.Status, fold.Status))
	}
	if fold.Events != st.Events {
		out = append(out, fmt.Sprintf("events: %d in the coordinator, %d in the log", st.Events, fold.Events))
	}
	seen := map[string]bool{}
	if fold.Graph != nil {
		for i, g := range fold.Graph.Nodes {
			seen[g.Path] = true
			theirs, ok := st.Nodes[g.Path]
			if !ok {
				out = append(out, fmt.Sprintf("node %s: missing from the coordinator's state", g.Path))
				continue
			}
			out = append(out, compareNodes(g.Path, fold.Nodes[i], theirs)...)
		}
	}
	var extra []string
	for path := range st.Nodes {
		if !seen[path] {
			extra = append(extra, path)
		}
	}
	sort.Strings(extra)
	for _, path := range extra {
		out = append(out, fmt.Sprintf("node %s: in the coordinator's state, not in the log's definition", path))
	}
	return out
}

// compareNodes compares two node states through their JSON, so that what
// the coordinator sent (itself JSON) compares exactly, field by field.
func compareNodes(path string, ours, theirs machine.Node) []string {
	a, b := fields(ours), fields(theirs)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var diffs []string
	for _, k := range sorted {
		if !bytes.Equal(a[k], b[k]) {
			diffs = append(diffs, fmt.Sprintf("%s %s in the coordinator, %s in the log", k, shown(b[k]), shown(a[k])))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("node %s: %s", path, strings.Join(diffs, "; "))}
}

func fields(n machine.Node) map[string]json.RawMessage {
	b, _ := json.Marshal(n)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	for k, v := range m {
		var c bytes.Buffer
		if json.Compact(&c, v) == nil {
			m[k] = c.Bytes()
		}
	}
	return m
}

func shown(v json.RawMessage) string {
	if v == nil {
		return "(none)"
	}
	return clipTo(string(v), 40)
}

// verifyIndex compares the fold's status with the saga's summary, which
// the coordinator writes just after the log (in the saga index while it
// runs, in the archive once it finished): a difference lasting longer than
// wait is reported.
func verifyIndex(ctx context.Context, js jetstream.JetStream, r *replayed, v *verification, wait time.Duration) *verification {
	ix, err := index.Open(ctx, js, r.ns)
	if err != nil {
		v.Note += "; cannot open the saga index: " + err.Error()
		return v
	}
	parts, err := r.ns.DeployedPartitions(ctx, js)
	if err != nil || parts == 0 {
		v.Note += fmt.Sprintf("; cannot read the partition count (%v), so nothing was compared", err)
		return v
	}
	log := streams.NewLogIn(js, r.ns)
	deadline := time.Now().Add(wait)
	for {
		sum, err := ix.Get(ctx, streams.Partition(r.state.SagaID, parts), r.state.SagaID)
		if errors.Is(err, index.ErrNotFound) && r.state.Status.Finished() {
			var e *streams.Entry
			if e, err = log.Archived(ctx, r.state.SagaID); err == nil {
				err = json.Unmarshal(e.Summary, &sum)
			}
			if errors.Is(err, streams.ErrNotFound) {
				err = index.ErrNotFound
			}
		}
		switch {
		case errors.Is(err, index.ErrNotFound):
			v.Note += "; neither the saga index nor the archive has a summary of it, so nothing was compared"
			return v
		case err != nil:
			v.Note += "; cannot read the saga index: " + err.Error()
			return v
		}
		v.Against = "index"
		v.Mismatches = nil
		if sum.Status != string(r.state.Status) {
			v.Mismatches = append(v.Mismatches, fmt.Sprintf("status: %s in the saga index, %s in the log", sum.Status, r.state.Status))
		}
		if r.state.Created != nil && sum.Name != r.state.Created.Definition.Name {
			v.Mismatches = append(v.Mismatches, fmt.Sprintf("name: %q in the saga index, %q in the log", sum.Name, r.state.Created.Definition.Name))
		}
		v.Verified = len(v.Mismatches) == 0
		if v.Verified || time.Now().After(deadline) {
			return v
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return v
		case <-t.C:
		}
	}
}

func (v *verification) print(w io.Writer) {
	switch {
	case v.Against == "coordinator" && v.Verified:
		fmt.Fprintf(w, "verified: the coordinator's state equals the log's fold (coordinator %s, at log message #%d)\n", v.Coordinator, v.Seq)
	case v.Against == "coordinator":
		fmt.Fprintf(w, "MISMATCH: coordinator %s's state differs from the log's fold (at log message #%d):\n", v.Coordinator, v.Seq)
	case v.Against == "index" && v.Verified:
		fmt.Fprintf(w, "%s; verified: the saga index's summary agrees with the log's fold\n", v.Note)
	case v.Against == "index":
		fmt.Fprintf(w, "%s; MISMATCH: the saga index's summary differs from the log's fold:\n", v.Note)
	default:
		fmt.Fprintf(w, "not verified: %s\n", v.Note)
	}
	for _, m := range v.Mismatches {
		fmt.Fprintf(w, "  - %s\n", m)
	}
}

// err is the verification's failure, if it failed.
func (v *verification) err() error {
	if len(v.Mismatches) == 0 {
		return nil
	}
	what := "the saga index"
	if v.Against == "coordinator" {
		what = "coordinator " + v.Coordinator + "'s state"
	}
	return fmt.Errorf("%s differs from the log's fold: %s", what, strings.Join(v.Mismatches, "; "))
}
