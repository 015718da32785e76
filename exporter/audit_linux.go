//go:build linux

package exporter

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/xtables"
)

// LiveAuditor audits the rules of one namespace as snatrace audit does
// (audit.Live) and follows them between audits, so that the exporter
// re-reads them when they may have changed rather than on a timer alone.
type LiveAuditor struct {
	// LegacyCheckGap spaces the checks of the iptables-legacy tables that
	// closes of the xtables lock start: at most one per gap (the exporter's
	// --audit-min-gap; 0: one per close). Set it before Watch.
	LegacyCheckGap time.Duration

	ns       *netns.NS
	lockPath string
	chains   ruleset.ChainCache
	last     atomic.Pointer[ruleset.Ruleset] // what the last audit read (ScopeOnly)
	// legacy is the iptables-legacy tables' fingerprint taken before the
	// last audit read them (xtables.Fingerprints), while Watch
	// runs; 0 for none.
	legacy   atomic.Uint64
	closes   atomic.Uint64 // closes of the xtables lock seen so far
	watching atomic.Bool
	tables   xtables.Fingerprints // their memory, while checks come often
	// reading is held by an audit and by a check of the legacy tables:
	// one 60 MB read at a time.
	reading sync.Mutex
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
	a.reading.Lock()
	defer a.reading.Unlock()
	watching := a.watching.Load()
	closes := a.closes.Load()
	var before uint64
	if watching {
		// The legacy tables before and after the read: the fingerprint is
		// kept only when they did not change meanwhile, so that it is what
		// the read saw. The checks' tables go back to the system first: the
		// runtime would not always make their memory the read's own.
		before = a.legacyFingerprint()
		a.tables.Release()
		debug.FreeOSMemory()
	}
	in, err := audit.Live(ctx, audit.LiveOptions{NS: a.ns, Chains: &a.chains})
	if err != nil {
		a.legacy.Store(0) // the next close re-audits
		a.last.Store(nil)
		return AuditResult{}, fmt.Errorf("reading the SNAT rules: %w", err)
	}
	if watching {
		if after := a.legacyFingerprint(); after != before || a.closes.Load() != closes {
			// Changed, or written and put back, during the read: the
			// next check re-audits.
			before = 0
		}
		a.legacy.Store(before)
	}
	a.last.Store(in.Rules.ScopeOnly())
	return FromAuditReport(audit.Run(in)), nil
}

// Watch is a WatchFunc: it wakes the audit on an nftables commit that may
// have changed what the last audit read (a commit elsewhere — kube-proxy's
// service chains — wakes nothing, ruleset.Ruleset.Affected) and on a close
// of the xtables lock after which the iptables-legacy tables the audit
// reads differ from what it read (iptables-legacy sends no events, and
// every iptables-legacy command takes the lock, listings too). It returns
// when ctx ends, or with an error when the nftables monitor fails.
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
	a.watching.Store(true)
	checks := make(chan struct{}, 1)
	go a.countCloses(ctx, lock, checks)
	go a.followLock(ctx, checks, wake)
	return mon.RunCommits(ctx, func(c nftnl.Commit) {
		a.chains.Observe(c)
		if a.last.Load().Affected(c) {
			wake("nftables")
		}
	})
}

// legacyFingerprint fingerprints the iptables-legacy tables the audit
// reads; 0 when they cannot be read (then every lock close wakes the
// audit, which reports the error).
func (a *LiveAuditor) legacyFingerprint() uint64 {
	fp, err := a.tables.Of(a.ns, audit.LegacyTables...)
	if err != nil {
		return 0
	}
	return fp | 1 // never 0
}

// legacyChanged reports whether the iptables-legacy tables the audit reads
// differ from those the last audit read. Reading them costs the kernel's
// copy of them into memory kept from the last check (0.1 s at 100,000
// rules), not an audit's parsing.
func (a *LiveAuditor) legacyChanged() bool {
	a.reading.Lock()
	defer a.reading.Unlock()
	last := a.legacy.Load()
	return last == 0 || a.legacyFingerprint() != last
}

// legacyIdle is how long the checks of followLock keep the tables' memory
// after the last one, at least.
const legacyIdle = time.Minute

// followLock checks the iptables-legacy tables after closes of the xtables
// lock, at most once per LegacyCheckGap (the closes in between are one
// check), and wakes the audit when they changed. The checks keep the
// tables' memory (60 MB at 100,000 rules) while they come often, and give
// it back after legacyIdle without one.
func (a *LiveAuditor) followLock(ctx context.Context, lock <-chan struct{}, wake func(trigger string)) {
	defer a.watching.Store(false)
	defer a.tables.Release()
	idle := time.NewTimer(legacyIdle)
	defer idle.Stop()
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			a.tables.Release()
			debug.FreeOSMemory()
			continue
		case <-lock:
		}
		idle.Reset(max(legacyIdle, 4*a.LegacyCheckGap))
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			select { // a close during the wait is this check's
			case <-lock:
			default:
			}
		}
		next = time.Now().Add(a.LegacyCheckGap)
		if a.legacyChanged() {
			wake("xtables-lock")
		}
	}
}

// countCloses counts the closes of the xtables lock as they come and
// passes them on to followLock (one pending is enough): an audit during
// which the lock closed cannot trust its fingerprint, even when the tables
// look the same after it (a rule deleted and put back).
func (a *LiveAuditor) countCloses(ctx context.Context, lock <-chan struct{}, checks chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-lock:
			a.closes.Add(1)
			select {
			case checks <- struct{}{}:
			default:
			}
		}
	}
}
