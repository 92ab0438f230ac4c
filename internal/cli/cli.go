// Package cli implements the jetsaga command. Commands write to the given
// writers and return an exit code, so they are tested in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jetsaga/jetsaga/saga"
)

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, env *env, args []string) error
}

// env is what commands write to.
type env struct {
	stdout, stderr io.Writer
}

var commands []command

func register(c command) { commands = append(commands, c) }

// errUsage marks an error in how a command was called.
var errUsage = errors.New("usage")

// Run runs the command line args (without the program name) and returns the
// process's exit code: 0 on success, 1 on failure, 2 on a usage error.
// Errors are printed as one line on stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "jetsaga %s: %s\nusage: jetsaga %s %s (jetsaga %s -h for its flags)\n",
					c.name, strings.TrimPrefix(err.Error(), errUsage.Error()+": "), c.name, c.args, c.name)
				return 2
			default:
				var ve *saga.ValidationError
				if errors.As(err, &ve) {
					// One problem a line: a definition's problems are read
					// and fixed one by one.
					fmt.Fprintf(stderr, "jetsaga %s: %v\n", c.name, err)
				} else {
					fmt.Fprintf(stderr, "jetsaga %s: %v\n", c.name, oneLine(err))
				}
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "jetsaga: unknown command %q (run 'jetsaga help')\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "jetsaga — sagas on NATS JetStream\n\nusage: jetsaga <command> [flags]\n\nCommands:")
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	width := 0
	for _, c := range cs {
		width = max(width, len(c.name))
	}
	for _, c := range cs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'jetsaga <command> -h' for a command's flags.")
}

// newFlags returns a flag set for a command that reports errors instead of
// exiting. A bad flag is reported once, by Run, with one line on where to
// find help; -h prints the flags.
func newFlags(e *env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: jetsaga %s %s\n", name, args)
		fs.SetOutput(e.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses flags (allowing them after positional arguments too) and
// returns the positional arguments. -h (or -help) prints the command's
// flags and returns flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	help := fs.Usage
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--h" || a == "-help" || a == "--help" {
			help()
			return nil, flag.ErrHelp
		}
	}
	// The flag package prints the help on every error; Run says the
	// error instead, with one line on where the help is.
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// oneLine folds a multi-line error into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
