//go:build linux

package exporter

import (
	"context"
	"fmt"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/ruleset"
)

// LiveAudit returns the audit of the rules of a namespace (nil: the
// exporter's own), as snatrace audit runs it: rules over nftables netlink and
// iptables-legacy-save, the kernel and iptables versions, and the conntrack
// counters since boot (no measuring interval: the exporter's own counters
// give the rates). It needs CAP_NET_ADMIN.
func LiveAudit(ns *NetNS) AuditFunc {
	return func(ctx context.Context) (AuditResult, error) {
		opts := ruleset.ReadOptions{}
		runner := ruleset.ExecRunner{}
		nsFD := 0
		if ns != nil {
			nsFD = ns.FD()
			opts.NetNSFd = nsFD
			runner.NetNSPath = ns.Path
		}
		opts.Runner = runner
		rs, err := ruleset.Read(ctx, opts)
		if err != nil {
			return AuditResult{}, fmt.Errorf("reading the SNAT rules: %w", err)
		}
		in := audit.Input{Rules: rs}
		if k, err := audit.KernelRelease(); err == nil {
			in.Kernel = k
		}
		in.Iptables = ruleset.IptablesVersion(ctx, runner, "iptables")
		if ct, err := audit.ReadConntrack(ctx, nsFD, 0, audit.Sleep); err == nil {
			in.Conntrack = ct
		}
		return FromAuditReport(audit.Run(in)), nil
	}
}
