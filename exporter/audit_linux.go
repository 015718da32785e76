//go:build linux

package exporter

import (
	"context"
	"fmt"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
)

// LiveAudit returns the audit of the rules of namespace ns (nil: the
// exporter's own), as snatrace audit runs it: rules over nftables netlink and
// iptables-legacy-save, the kernel and iptables versions, and the conntrack
// counters since boot (no measuring interval: the exporter's own counters
// give the rates). It needs CAP_NET_ADMIN.
func LiveAudit(ns *netns.NS) AuditFunc {
	return func(ctx context.Context) (AuditResult, error) {
		rs, err := ruleset.Read(ctx, ruleset.ReadOptions{NS: ns})
		if err != nil {
			return AuditResult{}, fmt.Errorf("reading the SNAT rules: %w", err)
		}
		in := audit.Input{Rules: rs}
		if k, err := kernel.Release(); err == nil {
			in.Kernel = k
		}
		in.Iptables = ruleset.IptablesVersion(ctx, tool.Exec{NS: ns}, "iptables")
		if ct, err := audit.ReadConntrack(ctx, ns, 0, audit.Sleep); err == nil {
			in.Conntrack = ct
		}
		return FromAuditReport(audit.Run(in)), nil
	}
}
