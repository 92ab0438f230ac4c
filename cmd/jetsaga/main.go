// Command jetsaga runs and operates jetsaga: `jetsaga dev` for everything on
// one machine, and commands to inspect sagas. See `jetsaga help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jetsaga/jetsaga/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
