package cli

import (
	"encoding/json"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/events"
)

func TestDagLinesNestsSubsagas(t *testing.T) {
	t.Parallel()
	s := &client.Saga{Nodes: []client.Node{
		{Path: "ip", Kind: "action", State: "succeeded", Output: json.RawMessage(`{"ip":"10.0.0.7"}`)},
		{Path: "vm/@start", Kind: "subsaga-start", State: "succeeded", Parents: []string{"ip"}},
		{Path: "vm/create", Kind: "action", State: "succeeded", Parents: []string{"vm/@start"}, Output: json.RawMessage(`"vm-1"`)},
		{Path: "vm/disk/@start", Kind: "subsaga-start", State: "succeeded", Parents: []string{"vm/create"}},
		{Path: "vm/disk/attach", Kind: "action", State: "started", Attempt: 2, Parents: []string{"vm/disk/@start"},
			Error: &events.Error{Kind: events.ErrorTimeout, Message: "no reply"}},
		{Path: "vm/disk", Kind: "subsaga", State: "pending", Parents: []string{"vm/disk/attach"}},
		{Path: "vm", Kind: "subsaga", State: "pending", Parents: []string{"vm/disk"}},
		{Path: "notify", Kind: "action", State: "pending", Parents: []string{"ip", "vm"},
			Output: json.RawMessage(`"` + strings.Repeat("x", 100) + `"`)},
	}}
	want := []string{
		`├─ ip           ✓ succeeded                               {"ip":"10.0.0.7"}`,
		`├─ vm           ▶ started                  after ip`,
		`│  ├─ create    ✓ succeeded                               "vm-1"`,
		`│  └─ disk      ▶ started                  after create`,
		`│     └─ attach ▶ started (attempt 2)                     last attempt: timeout: no reply`,
		`└─ notify       · pending                  after ip, vm   "` + strings.Repeat("x", outputWidth-2) + "…",
	}
	got := dagLines(s, outputWidth)
	for i := range got {
		got[i] = strings.Join(strings.Fields(got[i]), " ")
	}
	for i := range want {
		want[i] = strings.Join(strings.Fields(want[i]), " ")
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPrintStatusFlagsPartitions(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	printStatus(&b, []coordinator.Status{
		{Name: "a", Partitions: []coordinator.PartitionStatus{{ID: 0}, {ID: 1, Sagas: 3}, {ID: 2}}, InFlightSagas: 3, InFlightRequests: 1,
			RecentFailures: []string{"saga x: boom"}, LastRecovery: time.Now()},
		{Name: "b", Partitions: []coordinator.PartitionStatus{{ID: 2}, {ID: 3}}},
	}, 6)
	for _, want := range []string{
		"2 coordinators answered; the topology has 6 partitions\n",
		"WARNING: no coordinator drives partitions 4-5",
		"WARNING: several coordinators drive partitions 2:",
		"coordinator a\n  partitions       3: 0-2\n  in flight        3 sagas, 1 request (sagas by partition 1:3)",
		"  recent failures  (1, newest last)\n    saga x: boom",
		"coordinator b\n  partitions       2: 2-3",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestFlagHelpers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		s    string
		want []int
	}{{"0-3,7,9-10", []int{0, 1, 2, 3, 7, 9, 10}}, {"5", []int{5}}} {
		got, err := parseRanges(c.s)
		if err != nil || !slices.Equal(got, c.want) || ranges(got) != c.s {
			t.Errorf("parseRanges(%q) = %v, %v; ranges back %q", c.s, got, err, ranges(got))
		}
	}
	for _, bad := range []string{"", "a", "3-1", "1-", "-1"} {
		if _, err := parseRanges(bad); err == nil {
			t.Errorf("parseRanges(%q) accepted", bad)
		}
	}

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for s, want := range map[string]time.Time{
		"90m":                  now.Add(-90 * time.Minute),
		"2d":                   now.AddDate(0, 0, -2),
		"2026-02-01T10:00:00Z": time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(s, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := parseSince("last week", now); err == nil {
		t.Error("parseSince accepted nonsense")
	}

	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := addConnFlags(fs)
	setDefault(fs, "timeout", "1m", "longer")
	if c.timeout != time.Minute || fs.Lookup("timeout").DefValue != "1m" {
		t.Fatalf("timeout %s", c.timeout)
	}
	if err := fs.Parse([]string{"-timeout", "5s"}); err != nil || c.timeout != 5*time.Second {
		t.Fatalf("-timeout 5s: %v %s", err, c.timeout)
	}
}
