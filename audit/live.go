package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/snatrace/snatrace/internal/background"
	"github.com/snatrace/snatrace/internal/netstat"
	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/tsoffset"
)

// LiveOptions say what a live audit reads.
type LiveOptions struct {
	// NS is the namespace audited; nil for the caller's own.
	NS *netns.NS
	// Interval is how far apart the two counter readings are; 0 reads the
	// counters once (totals since the namespace started).
	Interval time.Duration
	// SkipLegacy leaves iptables-legacy unread.
	SkipLegacy bool
	// Kernel and Iptables override the versions read from the host.
	Kernel, Iptables string
	// Sleep waits the interval; nil is Sleep.
	Sleep Sleeper
	// Chains keeps the nftables chain list between the reads of a caller
	// that follows the namespace's commits (ruleset.ChainCache).
	Chains *ruleset.ChainCache
}

// ErrPermission wraps a live read refused for lack of privilege.
var ErrPermission = errors.New("reading netfilter rules needs CAP_NET_ADMIN (run as root)")

// Live reads everything an audit of a running host or namespace looks at:
// its rules (nftables over netlink; iptables-legacy's IPv4 and IPv6 nat
// tables through the kernel interface, its other tables through its save
// tools, run inside the namespace), the kernel release, the iptables version and
// the conntrack counters, and returns the Input for Run. Counters that
// cannot be read are a warning, not an error.
func Live(ctx context.Context, o LiveOptions) (Input, error) {
	in := Input{Kernel: o.Kernel, Iptables: o.Iptables}
	// Beside the rules' read: the probe (waited for on every path: it
	// deletes its namespace when it ends) and the iptables version.
	ts := background.Start(func() *tsoffset.Detection { return KernelTSOffsets(ctx, o.Kernel) })
	defer ts()
	iptables := background.Start(func() string {
		if o.Iptables != "" {
			return o.Iptables
		}
		return ruleset.IptablesVersion(ctx, tool.Exec{NS: o.NS}, "iptables")
	})
	defer iptables()
	rs, err := ruleset.Read(ctx, ruleset.ReadOptions{NS: o.NS, SkipLegacy: o.SkipLegacy, LegacyDirect: true, LegacyKeep: dnsCandidate, Chains: o.Chains})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return in, fmt.Errorf("%w: %w", ErrPermission, err)
		}
		return in, err
	}
	in.Rules = rs
	if in.Kernel == "" {
		if k, err := kernel.Release(); err == nil {
			in.Kernel = k
		}
	}
	in.Iptables = iptables()
	dns, warnings := ScanDNSLive(ctx, o.NS, tool.Exec{NS: o.NS}, rs)
	in.DNS = dns
	rs.Warnings = append(rs.Warnings, warnings...)
	if o.Sleep == nil {
		o.Sleep = Sleep
	}
	in.TSOffsets = ts()
	before, _ := netstat.ReadIn(o.NS)
	ct, err := ReadConntrack(ctx, o.NS, o.Interval, o.Sleep)
	if err != nil {
		if ctx.Err() != nil {
			return in, ctx.Err()
		}
		rs.Warnings = append(rs.Warnings, fmt.Sprintf("conntrack counters not read: %v", err))
		return in, nil
	}
	in.Conntrack = ct
	if after, err := netstat.ReadIn(o.NS); err == nil {
		if o.Interval <= 0 {
			before = nil
		}
		in.PAWS = PAWSFrom(before, after, ct.Interval)
	}
	return in, nil
}
