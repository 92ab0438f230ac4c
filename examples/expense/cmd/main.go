// Command expense runs the expense-approval example: on its own embedded
// server (go run ./examples/expense/cmd), or against jetsaga dev
// (go run ./examples/expense/cmd -server nats://127.0.0.1:4222).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/jetsaga/jetsaga/examples/expense"
	"github.com/jetsaga/jetsaga/examples/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := demo.Start(ctx, demo.Flags(), expense.Register)
	if err != nil {
		fmt.Fprintln(os.Stderr, "expense:", err)
		os.Exit(1)
	}
	defer env.Close()
	if _, err := expense.Demo(ctx, env.Client, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "expense:", err)
		os.Exit(1)
	}
}
