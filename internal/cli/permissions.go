package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/jetsaga/jetsaga/streams"
)

func init() {
	register(command{name: "permissions", args: permissionsArgs, summary: "print the least-privilege NATS permissions of a role (coordinator, participant, client, operator)", run: runPermissions})
}

const permissionsArgs = "--role coordinator|participant|client|operator [--user NAME] [--action A ...] [--namespace N] [--legacy-barrier] [--json]"

func runPermissions(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "permissions", permissionsArgs)
	role := fs.String("role", "", "coordinator, participant, client or operator")
	user := fs.String("user", "", "the user's name; its inbox prefix is _INBOX_<user> (default: the role)")
	var actions listFlag
	fs.Var(&actions, "action", "an action the participant serves (repeatable)")
	namespace := fs.String("namespace", os.Getenv("JETSAGA_NAMESPACE"), "the deployment's namespace: its streams, buckets and subjects only (default $JETSAGA_NAMESPACE, else none)")
	legacy := fs.Bool("legacy-barrier", false, "a participant may also read barrier records at the keys of releases before per-action key spaces (while upgrading, with participant.Config.LegacyBarrierKeys)")
	asJSON := fs.Bool("json", false, "print the permissions as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	name := *user
	if name == "" {
		name = *role
	}
	inbox := "_INBOX_" + name
	p, err := streams.PermissionsFor(streams.Role(*role), streams.PermissionOptions{Inbox: inbox, Actions: actions, Namespace: streams.Namespace(*namespace), LegacyBarrier: *legacy})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"user": name, "inbox_prefix": inbox, "permissions": p})
	}
	fmt.Fprintf(e.stdout, "# jetsaga %s: connect with nats.CustomInboxPrefix(%q) (nats CLI: --inbox-prefix %s)\n", *role, inbox, inbox)
	printServerUser(e.stdout, name, p)
	return nil
}

// printServerUser writes a nats-server authorization user block.
func printServerUser(w io.Writer, name string, p streams.Permissions) {
	list := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	fmt.Fprintf(w, "{\n  user: %q\n  password: $%s_PASSWORD\n  permissions: {\n", name, strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
	fmt.Fprintf(w, "    publish: { allow: %s }\n", list(p.Publish))
	fmt.Fprintf(w, "    subscribe: { allow: %s }\n", list(p.Subscribe))
	if p.AllowResponses {
		fmt.Fprintln(w, "    allow_responses: true")
	}
	fmt.Fprintln(w, "  }\n}")
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
