// Command vm runs the VM-provisioning example: on its own embedded server
// (go run ./examples/vm/cmd), or against jetsaga dev
// (go run ./examples/vm/cmd -server nats://127.0.0.1:4222).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/examples/vm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := demo.Start(ctx, demo.Flags(), vm.Register)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm:", err)
		os.Exit(1)
	}
	defer env.Close()
	if _, err := vm.Demo(ctx, env.Client, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vm:", err)
		os.Exit(1)
	}
}
