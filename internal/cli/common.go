package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/streams"
)

// What the helpers below share: commands that operate on one saga by id,
// JSON output, and flags some commands give another meaning.

// dial connects and returns a client; close the connection when done.
func (c *connFlags) dial(ctx context.Context, opts ...client.Option) (*nats.Conn, *client.Client, error) {
	nc, js, err := c.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	cl, err := client.New(ctx, js, append([]client.Option{client.WithNamespace(c.ns())}, opts...)...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, cl, nil
}

// setDefault changes the default and the help of a flag already defined:
// the connection flags' -timeout bounds more than NATS requests for some
// commands (how long start --wait waits, how long status gathers replies).
func setDefault(fs *flag.FlagSet, name, value, usage string) {
	f := fs.Lookup(name)
	if err := f.Value.Set(value); err != nil {
		panic(fmt.Sprintf("cli: default %q of -%s: %v", value, name, err))
	}
	f.DefValue, f.Usage = value, usage
}

// sagaIDArg checks a saga id given on the command line (exit 1 when
// malformed, like replay has always done).
func sagaIDArg(id string) error { return streams.ValidateSagaID(id) }

// parseSagaID parses the flags of a command about one saga and returns the
// saga id, its one positional argument.
func parseSagaID(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("%w: want one saga id", errUsage)
	}
	return pos[0], sagaIDArg(pos[0])
}

// noSaga turns the ways "no such saga" comes back into one message.
func noSaga(id string, err error) error {
	if errors.Is(err, client.ErrNotFound) || errors.Is(err, streams.ErrNotFound) {
		return fmt.Errorf("no saga %s: it has no log (check the id with jetsaga list)", id)
	}
	return err
}

// writeJSON prints v indented, for -json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// operatorName is who an operator command is recorded as sent by.
func operatorName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "cli"
}

// metaFlag collects repeated -meta k=v flags.
type metaFlag map[string]string

func (m metaFlag) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

// parseSince reads a -since flag: a duration back from now ("90m", "2d") or
// a time (RFC 3339, or a date).
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("-since %q: want a duration (1h, 30m, 7d) or a time (RFC 3339 or 2006-01-02)", s)
}

// ranges writes sorted ints compactly: 0-3,7,9-10.
func ranges(ns []int) string {
	ns = append([]int(nil), ns...)
	sort.Ints(ns)
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ns[i], ns[j])
		} else {
			fmt.Fprintf(&b, "%d", ns[i])
		}
		i = j + 1
	}
	return b.String()
}

// parseRanges reads what ranges writes.
func parseRanges(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not a partition number or range (like 0-31)", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a partition range (like 0-31)", part)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, p)
		}
	}
	return out, nil
}

// clipTo shortens s to at most n runes.
func clipTo(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
