// Command trip runs the trip-booking example: on its own embedded server
// (go run ./examples/trip/cmd), or against jetsaga dev
// (go run ./examples/trip/cmd -server nats://127.0.0.1:4222).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/examples/trip"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := demo.Start(ctx, demo.Flags(), trip.Register)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trip:", err)
		os.Exit(1)
	}
	defer env.Close()
	if _, err := trip.Demo(ctx, env.Client, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "trip:", err)
		os.Exit(1)
	}
}
