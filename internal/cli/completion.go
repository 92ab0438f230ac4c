package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

func init() {
	register(command{name: "completion", args: "bash|zsh", summary: "print a shell completion script: eval \"$(jetsaga completion bash)\"", run: runCompletion})
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([A-Za-z0-9][A-Za-z0-9-]*)`)

func runCompletion(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "completion", "bash|zsh")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "bash" && pos[0] != "zsh") {
		return fmt.Errorf("%w: want bash or zsh", errUsage)
	}
	var names []string
	cases := map[string][]string{}
	for _, c := range commands {
		names = append(names, c.name)
		// Each command's flags, from its own help.
		var help bytes.Buffer
		Run(ctx, []string{c.name, "-h"}, io.Discard, &help)
		for _, m := range flagLine.FindAllStringSubmatch(help.String(), -1) {
			cases[c.name] = append(cases[c.name], "--"+m[1])
		}
	}
	sort.Strings(names)
	var b strings.Builder
	if pos[0] == "zsh" {
		b.WriteString("autoload -U +X bashcompinit && bashcompinit\n")
	}
	b.WriteString("# jetsaga completion; load it with: eval \"$(jetsaga completion " + pos[0] + ")\"\n")
	b.WriteString("_jetsaga() {\n  local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n")
	b.WriteString("  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=( $(compgen -W \"" + strings.Join(names, " ") + "\" -- \"$cur\") )\n    return\n  fi\n")
	b.WriteString("  case \"$cur\" in\n  -*)\n    case \"${COMP_WORDS[1]}\" in\n")
	for _, n := range names {
		fmt.Fprintf(&b, "    %s) COMPREPLY=( $(compgen -W \"%s\" -- \"$cur\") ) ;;\n", n, strings.Join(cases[n], " "))
	}
	b.WriteString("    esac ;;\n  esac\n}\ncomplete -o default -F _jetsaga jetsaga\n")
	_, err = io.WriteString(e.stdout, b.String())
	return err
}
