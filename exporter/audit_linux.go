//go:build linux

package exporter

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/ruleset"
)

// LiveAuditor audits the rules of one namespace as snatrace audit does
// (audit.Live) and follows them between audits, so that the exporter
// re-reads them when they may have changed rather than on a timer alone.
type LiveAuditor struct {
	ns       *netns.NS
	lockPath string
	chains   ruleset.ChainCache
	last     atomic.Pointer[ruleset.Ruleset] // what the last audit read (ScopeOnly)
}

// NewLiveAuditor returns the auditor of namespace ns (nil: the exporter's
// own). lockPath is the xtables lock iptables writers take ("": the one
// iptables uses, ruleset.XtablesLockPath).
func NewLiveAuditor(ns *netns.NS, lockPath string) *LiveAuditor {
	if lockPath == "" {
		lockPath = ruleset.XtablesLockPath()
	}
	return &LiveAuditor{ns: ns, lockPath: lockPath}
}

// LiveAudit returns the audit of the rules of namespace ns (nil: the
// exporter's own), as snatrace audit runs it (audit.Live), with the
// conntrack counters since boot (no measuring interval: the exporter's own
// counters give the rates). It needs CAP_NET_ADMIN.
func LiveAudit(ns *netns.NS) AuditFunc { return NewLiveAuditor(ns, "").Audit }

// Audit is an AuditFunc. A read of a 100,000-rule nftables ruleset keeps
// its chain list for the next one while Watch follows the commits.
func (a *LiveAuditor) Audit(ctx context.Context) (AuditResult, error) {
	in, err := audit.Live(ctx, audit.LiveOptions{NS: a.ns, Chains: &a.chains})
	if err != nil {
		a.last.Store(nil)
		return AuditResult{}, fmt.Errorf("reading the SNAT rules: %w", err)
	}
	a.last.Store(in.Rules.ScopeOnly())
	return FromAuditReport(audit.Run(in)), nil
}

// Watch is a WatchFunc: it wakes the audit on an nftables commit that may
// have changed what the last audit read (a commit elsewhere — kube-proxy's
// service chains — wakes nothing, ruleset.Ruleset.Affected) and on every
// close of the xtables lock (iptables-legacy writes, which send no events).
// It returns when ctx ends, or with an error when the nftables monitor
// fails.
func (a *LiveAuditor) Watch(ctx context.Context, wake func(trigger string)) error {
	mon, err := nftnl.NewMonitor(a.ns)
	if err != nil {
		return err
	}
	lock := make(chan struct{}, 1)
	if err := ruleset.WatchXtablesLock(ctx, a.lockPath, lock); err != nil {
		mon.Close()
		return err
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-lock:
				wake("xtables-lock")
			}
		}
	}()
	return mon.RunCommits(ctx, func(c nftnl.Commit) {
		a.chains.Observe(c)
		if a.last.Load().Affected(c) {
			wake("nftables")
		}
	})
}
