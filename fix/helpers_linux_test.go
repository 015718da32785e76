//go:build linux

package fix

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

func needRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "creates network namespaces and changes their netfilter rules")
}

// newNS creates a fresh snt-fx-<name>-... namespace, deleted at cleanup.
func newNS(t testing.TB, name string) *netns.NS { return netnstest.New(t, "fx-"+name) }

// sh runs name args with stdin inside ns.
func sh(t testing.TB, ns *netns.NS, stdin, name string, args ...string) string {
	t.Helper()
	return netnstest.Run(t, ns, stdin, name, args...)
}

// shErr is sh for commands expected to fail.
func shErr(ns *netns.NS, stdin, name string, args ...string) (string, error) {
	return netnstest.RunErr(ns, stdin, name, args...)
}

var (
	saveComment = regexp.MustCompile(`(?m)^#.*\n`)
	saveCounter = regexp.MustCompile(`\[\d+:\d+\]`)
	nftCounter  = regexp.MustCompile(`counter packets \d+ bytes \d+`)
)

// dumps returns every table of every backend in ns, counters and dated
// comments removed: what "byte-identical, counters aside" compares.
func dumps(t testing.TB, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, tool := range []string{"iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save"} {
		out := sh(t, ns, "", tool)
		out = saveComment.ReplaceAllString(out, "")
		out = saveCounter.ReplaceAllString(out, "[-]")
		fmt.Fprintf(&b, "== %s\n%s", tool, out)
	}
	out := sh(t, ns, "", "nft", "list", "ruleset")
	fmt.Fprintf(&b, "== nft\n%s", nftCounter.ReplaceAllString(out, "counter"))
	return b.String()
}

// unfix removes the flag a fix adds from a dump, so that a fixed dump
// compares equal to the original one.
func unfix(s string) string {
	s = strings.ReplaceAll(s, " --random-fully", "")
	s = strings.ReplaceAll(s, "fully-random,", "")
	s = strings.ReplaceAll(s, ",fully-random", "")
	s = strings.ReplaceAll(s, " fully-random", "")
	return s
}

// diffLines returns the lines of a and b that differ, position by position.
func diffLines(a, b string) []string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("-%s\n+%s", x, y))
		}
	}
	return out
}

// beyondFlags returns the lines of after that differ from before by more
// than the flag a fix adds, and how many lines differ at all.
func beyondFlags(before, after string) (bad []string, changed int) {
	al, bl := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(al) != len(bl) {
		return []string{fmt.Sprintf("%d lines before, %d after", len(al), len(bl))}, 0
	}
	for i := range al {
		if al[i] == bl[i] {
			continue
		}
		changed++
		if unfix(bl[i]) != al[i] {
			bad = append(bad, fmt.Sprintf("-%s\n+%s", al[i], bl[i]))
		}
	}
	return bad, changed
}
