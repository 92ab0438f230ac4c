package sagatest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxDiffLines bounds a diff in a failure message.
const maxDiffLines = 60

// diff shows how b differs from a, line by line, as indented JSON (or Go
// syntax for what JSON cannot show): "-" lines are a's, "+" lines b's,
// named in the header.
func diff(a, b any, names ...string) string {
	header := "  (- before, + after)"
	if len(names) == 2 {
		header = fmt.Sprintf("  (- %s, + %s)", names[0], names[1])
	}
	la, lb := lines(a), lines(b)
	// Longest common subsequence, for a minimal line diff. Captures are
	// small; quadratic is fine.
	n, m := len(la), len(lb)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if la[i] == lb[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && la[i] == lb[j]:
			out = append(out, "    "+la[i])
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "  - "+la[i])
			i++
		default:
			out = append(out, "  + "+lb[j])
			j++
		}
	}
	out = trimContext(out, 3)
	if len(out) > maxDiffLines {
		out = append(out[:maxDiffLines], fmt.Sprintf("    … %d more lines", len(out)-maxDiffLines))
	}
	return header + "\n" + strings.Join(out, "\n")
}

// lines renders v as indented JSON lines.
func lines(v any) []string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return strings.Split(fmt.Sprintf("%#v", v), "\n")
	}
	return strings.Split(string(b), "\n")
}

// trimContext keeps changed lines and up to ctx unchanged lines around
// each, eliding the rest.
func trimContext(ls []string, ctx int) []string {
	keep := make([]bool, len(ls))
	for i, l := range ls {
		if strings.HasPrefix(l, "  +") || strings.HasPrefix(l, "  -") {
			for j := max(0, i-ctx); j <= min(len(ls)-1, i+ctx); j++ {
				keep[j] = true
			}
		}
	}
	var out []string
	skipped := false
	for i, l := range ls {
		if keep[i] {
			out = append(out, l)
			skipped = false
		} else if !skipped {
			out = append(out, "    …")
			skipped = true
		}
	}
	return out
}
