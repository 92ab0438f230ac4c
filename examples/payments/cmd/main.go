// Command payments runs the payments example: on its own embedded server
// (go run ./examples/payments/cmd), or against jetsaga dev
// (go run ./examples/payments/cmd -server nats://127.0.0.1:4222).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/examples/payments"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := demo.Start(ctx, demo.Flags(), payments.Register)
	if err != nil {
		fmt.Fprintln(os.Stderr, "payments:", err)
		os.Exit(1)
	}
	defer env.Close()
	if _, err := payments.Demo(ctx, env.Client, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "payments:", err)
		os.Exit(1)
	}
}
