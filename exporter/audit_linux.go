//go:build linux

package exporter

import (
	"context"
	"fmt"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/netns"
)

// LiveAudit returns the audit of the rules of namespace ns (nil: the
// exporter's own), as snatrace audit runs it (audit.Live), with the
// conntrack counters since boot (no measuring interval: the exporter's own
// counters give the rates). It needs CAP_NET_ADMIN.
func LiveAudit(ns *netns.NS) AuditFunc {
	return func(ctx context.Context) (AuditResult, error) {
		in, err := audit.Live(ctx, audit.LiveOptions{NS: ns})
		if err != nil {
			return AuditResult{}, fmt.Errorf("reading the SNAT rules: %w", err)
		}
		return FromAuditReport(audit.Run(in)), nil
	}
}
