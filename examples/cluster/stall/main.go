// Command stall reports, after examples/cluster/run.sh's trips, the
// longest interval in which trips were in flight and none advanced (no
// event appended to any trip's log): the availability figure of the run,
// through its node and coordinator crashes.
//
//	go run ./examples/cluster/stall --server nats://127.0.0.1:14301 --count 300
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/stall"
)

func main() {
	server := flag.String("server", nats.DefaultURL, "NATS URLs, comma-separated")
	prefix := flag.String("key-prefix", "cluster-", "the trips' idempotency keys are this prefix and 1…count")
	count := flag.Int("count", 300, "how many trips were started")
	flag.Parse()
	if err := run(*server, *prefix, *count); err != nil {
		fmt.Fprintln(os.Stderr, "stall:", err)
		os.Exit(1)
	}
}

func run(server, prefix string, count int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nc, err := nats.Connect(server)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cl, err := client.New(ctx, js)
	if err != nil {
		return err
	}
	var evs []stall.Event
	for i := 1; i <= count; i++ {
		id := client.SagaIDForKey(fmt.Sprintf("%s%d", prefix, i))
		log, err := cl.Events(ctx, id)
		if err != nil {
			return fmt.Errorf("trip %d (%s): %w", i, id, err)
		}
		for _, e := range log {
			evs = append(evs, stall.Event{SagaID: id, Time: e.Time})
		}
	}
	d, at := stall.Longest(evs)
	fmt.Printf("longest interval in which trips were in flight and none advanced: %s, from %s (%d events of %d trips)\n",
		d.Round(time.Millisecond), at.Local().Format("15:04:05.000"), len(evs), count)
	return nil
}
