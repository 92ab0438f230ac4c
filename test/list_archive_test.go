package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/index"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/streams"
)

// Listing the newest sagas reads the archive backwards and stops early;
// it must give what reading all of it gives.
func TestListNewestFromTheArchive(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := ctxT(t)
	if err := streams.Apply(ctx, js, streams.Config{Partitions: testPartitions}); err != nil {
		t.Fatal(err)
	}
	log := streams.NewLog(js)
	rng := rand.New(rand.NewPCG(7, 8))
	now := time.Now().UTC()
	statuses := []string{"succeeded", "unwound", "abandoned"}
	for i := range 700 {
		id := uuid.Must(uuid.NewV7()).String()
		// Created up to an hour ago, archived in an order unrelated to it.
		created := now.Add(-time.Duration(rng.IntN(3600000)) * time.Millisecond)
		s := index.Summary{ID: id, Name: fmt.Sprintf("n%d", i%3), Status: statuses[i%3], Created: created, Updated: created}
		b, _ := json.Marshal(s)
		if err := log.Archive(ctx, id, []byte(`[3,[2]]`), b); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := client.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ss []client.Summary) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	for _, f := range []client.Filter{{}, {Status: "unwound"}, {Name: "n2"}} {
		all, err := cl.List(ctx, f) // no limit: the whole archive, forwards
		if err != nil {
			t.Fatal(err)
		}
		if f.Status == "" && f.Name == "" && len(all) != 700 {
			t.Fatalf("listed %d of 700", len(all))
		}
		for _, limit := range []int{1, 5, 50, 300, 1000} {
			f.Limit = limit
			got, err := cl.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			want := all[:min(limit, len(all))]
			if !slices.Equal(ids(got), ids(want)) {
				t.Fatalf("%+v: the newest %d differ from the first %d of the whole list", f, len(got), len(want))
			}
		}
	}
}
