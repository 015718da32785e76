package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/kernel"
)

// SnapshotFunc reads the conntrack counters of the watched namespace.
type SnapshotFunc func() (ctstat.Snapshot, error)

// MaxFunc reads nf_conntrack_max of the watched namespace.
type MaxFunc func() (uint64, error)

// AuditFunc runs the rule audit of the watched host. It is called from the
// refresh loop only, never at scrape time.
type AuditFunc func(ctx context.Context) (AuditResult, error)

// WatchFunc follows the watched host's rules until ctx ends, calling wake
// (with what woke it: "nftables", "xtables-lock") when they may have
// changed since the last audit. It returns an error when it can no longer
// follow them.
type WatchFunc func(ctx context.Context, wake func(trigger string)) error

// Triggers of snatrace_audit_refreshes_total{trigger}.
const (
	TriggerStart    = "start"
	TriggerInterval = "interval"
)

// AuditResult is what the exporter needs from an audit: the SNAT rules and the
// findings, reduced to the labels it exports, and the rule sources it could
// not read (by RuleSource name; each becomes snatrace_scrape_error{source}).
type AuditResult struct {
	Rules      []AuditRule
	Findings   []AuditFinding
	ReadErrors map[string]error
}

// AuditRule is one SNAT/MASQUERADE rule.
type AuditRule struct {
	Owner      string // who manages the rule: "docker", "kube-proxy", "calico", "unknown"...
	Backend    string // "nftables", "iptables-nft", "iptables-legacy"
	Randomness string // RandomnessNone, RandomnessRandom, RandomnessFullyRandom or RandomnessUnknown
}

// Randomness values of snatrace_snat_rules{randomness}.
const (
	RandomnessNone        = "none"
	RandomnessRandom      = "random"
	RandomnessFullyRandom = "fully-random"
	// RandomnessUnknown is for a rule whose source does not show its flags;
	// the alert rules do not count it as racing.
	RandomnessUnknown = "unknown"
)

// AuditFinding is one finding of the audit.
type AuditFinding struct {
	Severity string // e.g. "high", "medium", "low", "info"
	Kind     string // a stable identifier of the finding kind
}

// BuildInfo labels snatrace_build_info.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// Sources of snatrace_scrape_error{source}.
const (
	SourceNetlink = ctstat.SourceNetlink // ctnetlink per-CPU statistics
	SourceProc    = ctstat.SourceProc    // /proc/.../stat/nf_conntrack
	SourceMax     = "max"                // nf_conntrack_max, when ctnetlink did not give it
	SourceAudit   = "audit"              // the last audit refresh
)

// RuleSources are the sources of the audit's rules, as
// snatrace_scrape_error{source} names them: the last refresh could not read
// (or read only in part) that backend's rules.
var RuleSources = []string{"rules_nftables", "rules_iptables_legacy", "rules_iptables_nft"}

// RuleSource is the snatrace_scrape_error source of a backend's rules.
func RuleSource(backend string) string {
	return "rules_" + strings.ReplaceAll(backend, "-", "_")
}

var sources = append([]string{SourceNetlink, SourceProc, SourceMax, SourceAudit}, RuleSources...)

// Option configures an Exporter.
type Option func(*Exporter)

// WithConntrack sets the readers of the conntrack statistics: netlink first,
// proc when netlink fails, max when the snapshot carries no table size. A nil
// reader is skipped. The default reads the process's own namespace through
// a ctstat.NetlinkReader of its own namespace (one socket kept between
// scrapes), ctstat.ReadProc(ctstat.ProcPath) and ctstat.ReadMax("").
func WithConntrack(netlink, proc SnapshotFunc, max MaxFunc) Option {
	return func(e *Exporter) { e.netlink, e.proc, e.max = netlink, proc, max }
}

// WithoutConntrack drops the conntrack metrics (audit only).
func WithoutConntrack() Option {
	return func(e *Exporter) { e.netlink, e.proc, e.max, e.noConntrack = nil, nil, nil, true }
}

// WithAudit sets the audit and how often Run refreshes it (60 s if interval
// is not positive). Without it no rule or finding metric is exported.
func WithAudit(f AuditFunc, interval time.Duration) Option {
	return func(e *Exporter) {
		e.audit = f
		if interval > 0 {
			e.auditInterval = interval
		}
	}
}

// WithAuditWatch refreshes the audit when w says the rules may have changed,
// at most once per minGap (1 s if not positive), besides the periodic
// refresh of WithAudit, which becomes a safety net: on a node whose rules
// stand still the exporter then reads them once per interval, and a change
// shows within about a second.
func WithAuditWatch(w WatchFunc, minGap time.Duration) Option {
	return func(e *Exporter) {
		e.watch = w
		e.minGap = time.Second
		if minGap > 0 {
			e.minGap = minGap
		}
	}
}

// WithKernelRelease sets the release in snatrace_kernel_info (default: uname).
func WithKernelRelease(release string) Option {
	return func(e *Exporter) { e.release = release }
}

// WithBuildInfo sets the labels of snatrace_build_info.
func WithBuildInfo(b BuildInfo) Option { return func(e *Exporter) { e.build = b } }

// WithLogger sets where source failures and recoveries are logged.
func WithLogger(l *slog.Logger) Option { return func(e *Exporter) { e.log = l } }

// WithClock sets the clock of the audit timestamps.
func WithClock(now func() time.Time) Option { return func(e *Exporter) { e.now = now } }

// Exporter is a prometheus.Collector. Conntrack statistics are read in
// Collect, one scrape at a time; the audit result is the last one Run or
// RefreshAudit obtained.
type Exporter struct {
	netlink, proc SnapshotFunc
	max           MaxFunc
	noConntrack   bool
	audit         AuditFunc
	auditInterval time.Duration
	watch         WatchFunc
	minGap        time.Duration
	release       string
	build         BuildInfo
	log           *slog.Logger
	now           func() time.Time

	scrapeMu sync.Mutex // one kernel read at a time

	mu          sync.Mutex // guards the fields below
	errTotal    map[string]uint64
	failing     map[string]bool
	auditRes    *AuditResult
	auditOK     time.Time
	auditErr    bool
	auditEver   bool
	auditRunDur time.Duration
	refreshes   map[string]uint64 // by trigger
	watching    bool              // the watch is following the rules
}

// New returns an Exporter.
func New(opts ...Option) *Exporter {
	e := &Exporter{
		netlink:       ctstat.NewNetlinkReader(nil).Read,
		proc:          func() (ctstat.Snapshot, error) { return ctstat.ReadProc(ctstat.ProcPath) },
		max:           func() (uint64, error) { return ctstat.ReadMax("") },
		auditInterval: 60 * time.Second,
		build:         BuildInfo{Version: "dev", GoVersion: runtime.Version()},
		log:           slog.New(slog.DiscardHandler),
		now:           time.Now,
		errTotal:      make(map[string]uint64),
		failing:       make(map[string]bool),
		refreshes:     make(map[string]uint64),
	}
	for _, o := range opts {
		o(e)
	}
	if e.release == "" {
		if r, err := kernel.Release(); err == nil {
			e.release = r
		}
	}
	for _, s := range sources {
		e.errTotal[s] = 0
	}
	return e
}

// AuditInterval is the refresh period Run uses.
func (e *Exporter) AuditInterval() time.Duration { return e.auditInterval }

// Run refreshes the audit now, then every audit interval and, with a
// watch (WithAuditWatch), whenever it reports a change, until ctx is done.
// Each refresh gets at most one interval. Without an audit it just waits.
func (e *Exporter) Run(ctx context.Context) {
	if e.audit == nil {
		<-ctx.Done()
		return
	}
	changed := make(chan string, 1)
	if e.watch != nil {
		go e.follow(ctx, changed)
	}
	t := time.NewTicker(e.auditInterval)
	defer t.Stop()
	// A change waits for the gap since the last refresh, but never longer
	// than the interval would have.
	gap := min(e.minGap, e.auditInterval)
	trigger, last := TriggerStart, time.Time{}
	for {
		if wait := gap - time.Since(last); trigger != TriggerStart && trigger != TriggerInterval && wait > 0 {
			select { // changes coalesce during the gap
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		e.refresh(ctx, trigger) // failures are recorded in the metrics and the log
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			trigger = TriggerInterval
		case trigger = <-changed:
		}
	}
}

// follow runs the watch, passing its wake-ups to changed (one pending is
// enough), and records whether it is following.
func (e *Exporter) follow(ctx context.Context, changed chan<- string) {
	e.setWatching(true)
	err := e.watch(ctx, func(trigger string) {
		select {
		case changed <- trigger:
		default:
		}
	})
	e.setWatching(false)
	if err != nil && ctx.Err() == nil {
		e.log.Warn("no longer following rule changes; the audit refreshes every interval only", "err", err, "interval", e.auditInterval)
	}
}

func (e *Exporter) setWatching(on bool) {
	e.mu.Lock()
	e.watching = on
	e.mu.Unlock()
}

// refresh runs RefreshAudit, counts it under its trigger, and gives the
// memory the audit freed back to the system: reading a 100,000-rule table
// takes tens of MiB for a moment (an iptables-legacy table is read whole,
// 60 MB), which the runtime would otherwise keep, counted against the
// DaemonSet's memory limit, until long after the node went quiet. It costs
// a collection of the exporter's small live heap (about 10 ms after an
// audit of 100,000 legacy rules, which takes 0.3–0.4 s) once per audit,
// and audits are at least --audit-min-gap apart.
func (e *Exporter) refresh(ctx context.Context, trigger string) {
	e.RefreshAudit(ctx)
	debug.FreeOSMemory()
	e.mu.Lock()
	e.refreshes[trigger]++
	e.mu.Unlock()
}

// RefreshAudit runs the audit once and keeps its result for the following
// scrapes. On failure the previous result stays exported, marked by
// snatrace_scrape_error{source="audit"} 1.
func (e *Exporter) RefreshAudit(ctx context.Context) error {
	if e.audit == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.auditInterval)
	defer cancel()
	start := e.now()
	res, err := e.audit(ctx)
	end := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.auditEver = true
	e.auditRunDur = end.Sub(start)
	e.noteLocked(SourceAudit, err)
	if err != nil {
		e.auditErr = true
		return fmt.Errorf("refreshing audit: %w", err)
	}
	e.auditErr = false
	e.auditRes = &res
	e.auditOK = end
	for _, src := range RuleSources {
		e.noteLocked(src, res.ReadErrors[src])
	}
	return nil
}

// noteLocked counts a failure of source and logs changes of state.
func (e *Exporter) noteLocked(source string, err error) {
	if err != nil {
		e.errTotal[source]++
		if !e.failing[source] {
			e.log.Warn("source failing", "source", source, "err", err)
		}
		e.failing[source] = true
		return
	}
	if e.failing[source] {
		e.log.Info("source recovered", "source", source)
	}
	e.failing[source] = false
}

func (e *Exporter) note(source string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noteLocked(source, err)
}

// Metric descriptors.
var (
	cpuCounters = []struct {
		name, help string
		get        func(ctstat.Counters) uint64
	}{
		{"found", "Conntrack lookups that found an entry (found).", func(c ctstat.Counters) uint64 { return c.Found }},
		{"invalid", "Packets conntrack could not track (invalid).", func(c ctstat.Counters) uint64 { return c.Invalid }},
		{"insert_failed", "Entries that could not be inserted at confirm: on TCP, SYNs lost to the SNAT source-port race (insert_failed).", func(c ctstat.Counters) uint64 { return c.InsertFailed }},
		{"drop", "Packets dropped by conntrack (drop).", func(c ctstat.Counters) uint64 { return c.Drop }},
		{"early_drop", "Entries evicted because the table was full (early_drop).", func(c ctstat.Counters) uint64 { return c.EarlyDrop }},
		{"search_restart", "Hash table lookups restarted after a resize (search_restart).", func(c ctstat.Counters) uint64 { return c.SearchRestart }},
		{"clash_resolve", "Clashes resolved at confirm, Linux 5.10+ (clash_resolve, /proc clashres).", func(c ctstat.Counters) uint64 { return c.ClashResolve }},
		{"chaintoolong", "Hash chains found too long, Linux 5.15+ (chaintoolong, /proc chainlength).", func(c ctstat.Counters) uint64 { return c.ChainTooLong }},
	}
	cpuDescs = func() []*prometheus.Desc {
		d := make([]*prometheus.Desc, len(cpuCounters))
		for i, c := range cpuCounters {
			d[i] = prometheus.NewDesc("snatrace_conntrack_"+c.name+"_total", c.help, []string{"cpu"}, nil)
		}
		return d
	}()
	entriesDesc = prometheus.NewDesc("snatrace_conntrack_entries",
		"Conntrack entries in the watched network namespace.", nil, nil)
	maxDesc = prometheus.NewDesc("snatrace_conntrack_max",
		"Conntrack table size (nf_conntrack_max) of the watched network namespace.", nil, nil)
	statsSourceDesc = prometheus.NewDesc("snatrace_conntrack_stats_source",
		"1 for the source the conntrack statistics of this scrape came from.", []string{"source"}, nil)
	rulesDesc = prometheus.NewDesc("snatrace_snat_rules",
		"SNAT/MASQUERADE rules found by the last successful audit.", []string{"owner", "backend", "randomness"}, nil)
	findingsDesc = prometheus.NewDesc("snatrace_audit_findings",
		"Findings of the last successful audit.", []string{"severity", "kind"}, nil)
	auditTimeDesc = prometheus.NewDesc("snatrace_audit_last_success_timestamp_seconds",
		"When the last successful audit finished, in seconds since the epoch.", nil, nil)
	auditDurDesc = prometheus.NewDesc("snatrace_audit_duration_seconds",
		"How long the last audit took.", nil, nil)
	refreshDesc = prometheus.NewDesc("snatrace_audit_refreshes_total",
		"Audit refreshes, by what started them: start, interval (the safety net), nftables or xtables-lock (a change).", []string{"trigger"}, nil)
	watchingDesc = prometheus.NewDesc("snatrace_audit_watching",
		"1 while the exporter follows rule changes (nftables events, the xtables lock); 0 when it only re-reads every interval.", nil, nil)
	buildDesc = prometheus.NewDesc("snatrace_build_info",
		"Build of the running snatrace.", []string{"version", "revision", "goversion"}, nil)
	kernelDesc = prometheus.NewDesc("snatrace_kernel_info",
		"Running kernel and its SNAT era: legacy (<5.0, shared rover), 5.0 (random offset), 6.5 (TIME_WAIT eviction).", []string{"release", "era"}, nil)
	errDesc = prometheus.NewDesc("snatrace_scrape_error",
		"1 if the last read of the source failed (for audit: the last refresh).", []string{"source"}, nil)
	errTotalDesc = prometheus.NewDesc("snatrace_scrape_errors_total",
		"Failed reads of the source.", []string{"source"}, nil)
)

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range cpuDescs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{entriesDesc, maxDesc, statsSourceDesc, rulesDesc, findingsDesc,
		auditTimeDesc, auditDurDesc, refreshDesc, watchingDesc, buildDesc, kernelDesc, errDesc, errTotalDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the conntrack statistics
// now and sends them with the last audit result.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.scrapeMu.Lock()
	defer e.scrapeMu.Unlock()

	scrapeErr := map[string]bool{}
	if !e.noConntrack {
		e.collectConntrack(ch, scrapeErr)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.auditRes != nil {
		collectAudit(ch, *e.auditRes)
		ch <- prometheus.MustNewConstMetric(auditTimeDesc, prometheus.GaugeValue, float64(e.auditOK.UnixNano())/1e9)
	}
	for trigger, n := range e.refreshes {
		ch <- prometheus.MustNewConstMetric(refreshDesc, prometheus.CounterValue, float64(n), trigger)
	}
	if e.audit != nil { // 0 without a watch (--no-watch), as its help says
		ch <- prometheus.MustNewConstMetric(watchingDesc, prometheus.GaugeValue, b2f(e.watching))
	}
	if e.auditEver {
		ch <- prometheus.MustNewConstMetric(auditDurDesc, prometheus.GaugeValue, e.auditRunDur.Seconds())
	}
	scrapeErr[SourceAudit] = e.auditErr
	for _, src := range RuleSources {
		scrapeErr[src] = e.auditRes != nil && e.auditRes.ReadErrors[src] != nil
	}
	ch <- prometheus.MustNewConstMetric(buildDesc, prometheus.GaugeValue, 1, e.build.Version, e.build.Revision, e.build.GoVersion)
	era, _ := KernelEra(e.release)
	ch <- prometheus.MustNewConstMetric(kernelDesc, prometheus.GaugeValue, 1, e.release, era)
	for _, s := range e.sourceList() {
		ch <- prometheus.MustNewConstMetric(errDesc, prometheus.GaugeValue, b2f(scrapeErr[s]), s)
		ch <- prometheus.MustNewConstMetric(errTotalDesc, prometheus.CounterValue, float64(e.errTotal[s]), s)
	}
}

// sourceList is the sources this exporter reads.
func (e *Exporter) sourceList() []string {
	var l []string
	if !e.noConntrack {
		l = append(l, SourceNetlink, SourceProc, SourceMax)
	}
	if e.audit != nil {
		l = append(l, SourceAudit)
		l = append(l, RuleSources...)
	}
	return l
}

func (e *Exporter) collectConntrack(ch chan<- prometheus.Metric, scrapeErr map[string]bool) {
	var (
		snap ctstat.Snapshot
		ok   bool
	)
	for _, r := range []struct {
		source string
		read   SnapshotFunc
	}{{SourceNetlink, e.netlink}, {SourceProc, e.proc}} {
		if r.read == nil {
			continue
		}
		s, err := r.read()
		e.note(r.source, err)
		if err != nil {
			scrapeErr[r.source] = true
			continue
		}
		snap, ok = s, true
		ch <- prometheus.MustNewConstMetric(statsSourceDesc, prometheus.GaugeValue, 1, r.source)
		break
	}
	if ok {
		cpus := append([]ctstat.CPU(nil), snap.CPUs...)
		sort.Slice(cpus, func(i, j int) bool { return cpus[i].CPU < cpus[j].CPU })
		for _, c := range cpus {
			cpu := strconv.Itoa(c.CPU)
			for i, cc := range cpuCounters {
				ch <- prometheus.MustNewConstMetric(cpuDescs[i], prometheus.CounterValue, float64(cc.get(c.Counters)), cpu)
			}
		}
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(snap.Entries))
	}
	tableMax := snap.Max
	if tableMax == 0 && e.max != nil {
		m, err := e.max()
		e.note(SourceMax, err)
		scrapeErr[SourceMax] = err != nil
		tableMax = m
	}
	if tableMax > 0 {
		ch <- prometheus.MustNewConstMetric(maxDesc, prometheus.GaugeValue, float64(tableMax))
	}
}

func collectAudit(ch chan<- prometheus.Metric, r AuditResult) {
	type ruleKey struct{ owner, backend, randomness string }
	rules := map[ruleKey]int{}
	for _, x := range r.Rules {
		rules[ruleKey{x.Owner, x.Backend, x.Randomness}]++
	}
	for k, n := range rules {
		ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(n), k.owner, k.backend, k.randomness)
	}
	type findingKey struct{ severity, kind string }
	findings := map[findingKey]int{}
	for _, x := range r.Findings {
		findings[findingKey{x.Severity, x.Kind}]++
	}
	for k, n := range findings {
		ch <- prometheus.MustNewConstMetric(findingsDesc, prometheus.GaugeValue, float64(n), k.severity, k.kind)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
