package ruleset

import (
	"context"
	"errors"
	"regexp"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/tool"
)

// ReadOptions says what Read reads.
type ReadOptions struct {
	// NS is the network namespace to read; nil for the caller's own.
	NS *netns.NS
	// Runner runs iptables-legacy-save and iptables-nft-save; nil means
	// tool.Exec inside NS. Read may call it from two goroutines at once.
	Runner tool.Runner
	// SkipLegacy skips iptables-legacy (its rules are invisible to nftables).
	SkipLegacy bool
	// natrule.Nftables are extra options for the nftables socket: a test dial.
	Nftables []nftnl.Option
	// Chains, if set, keeps the chain list between reads of a watcher
	// that feeds it the namespace's commits (Linux only).
	Chains *ChainCache
	// LegacyDirect reads iptables-legacy's nat tables (IPv4 and IPv6)
	// through the kernel interface (package xtables) instead of
	// iptables-legacy-save and ip6tables-legacy-save, falling back to the
	// family's tool when a chain holding a source-NAT rule has a rule it
	// cannot print, or when the namespace has other tables of the family
	// but no nat table. Only the nat table is read then (and its dump is
	// Dump.Direct); LegacyTexts gives a scan of other tables their text.
	LegacyDirect bool
	// LegacyKeep, with LegacyDirect, prints each nat table read through the
	// kernel interface at once, only the lines it accepts (the lines a scan
	// of the text would look at), and lets go of the table's entries: a
	// dual-stack node then holds one 60 MB table at a time, not both until
	// the scan. The dump is that text (Dump.Direct is nil), which
	// LegacyTexts returns for the nat table. A table it cannot print whole
	// is kept as Dump.Direct, as without LegacyKeep.
	LegacyKeep func(line string) bool
}

func (o ReadOptions) runner() tool.Runner {
	if o.Runner != nil {
		return o.Runner
	}
	return tool.Exec{NS: o.NS}
}

// ErrNoBackend is returned by Read when no backend could be read at all.
var ErrNoBackend = errors.New("no nftables access and no iptables-legacy-save")

var versionRe = regexp.MustCompile(`v(\d+\.\d+(?:\.\d+)?)`)

// IptablesVersion returns the version of the named iptables binary
// ("iptables", "iptables-legacy") as "1.8.9", or "" when it is not installed.
func IptablesVersion(ctx context.Context, run tool.Runner, bin string) string {
	if run == nil {
		run = tool.Exec{}
	}
	if _, err := run.LookPath(bin); err != nil {
		return ""
	}
	out, err := run.Run(ctx, tool.Command(bin, "--version"))
	if err != nil {
		return ""
	}
	if m := versionRe.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}
