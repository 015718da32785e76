// Package audit judges the source-NAT rules of a host: which of them can lose
// SYNs to the SNAT port race, whether the race is happening now (conntrack
// counters), and what to change, in the words of the software that owns each
// rule.
//
// Run is pure: it takes rules, counters and versions and returns findings,
// so every finding is testable without a kernel. Collecting the inputs from a
// live namespace is the caller's job (see ReadConntrack).
package audit

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/report/text"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tsoffset"
)

// Severity ranks findings; higher is worse.
type Severity int

// Severities, from least to most urgent.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = []string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) && s >= 0 {
		return severityNames[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// MarshalJSON writes the severity's name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// ParseSeverity returns the severity named s.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want one of %s)", s, strings.Join(severityNames, ", "))
}

// Kind names what a finding is about; stable, for JSON consumers.
type Kind string

// Finding kinds.
const (
	KindNoFullyRandom Kind = "no-fully-random"   // plain masquerade/snat: port preservation races
	KindRandomOnly    Kind = "random-only"       // random without fully-random
	KindSinglePort    Kind = "single-port"       // one source port: guaranteed clash
	KindNarrowPorts   Kind = "narrow-port-range" // few source ports: clashes and exhaustion
	KindFlagsUnknown  Kind = "flags-unknown"     // the source does not show the flags
	KindOldIptables   Kind = "iptables-too-old"  // iptables < 1.6.2: no MASQUERADE --random-fully
	KindKernelRover   Kind = "kernel-port-rover" // kernel < 5.0: global port rover
	KindRaceNow       Kind = "race-happening"    // insert_failed/drop rising now
	KindRacePast      Kind = "race-happened"     // insert_failed since boot, no interval measured
	KindTableFull     Kind = "conntrack-table-full"
	KindChainTooLong  Kind = "conntrack-chain-too-long"
	KindClashResolve  Kind = "clash-resolved"
	KindMixedBackends Kind = "mixed-backends" // iptables-legacy and nftables rules side by side
	KindNotRead       Kind = "rules-not-read" // a source of rules could not be read: the audit is incomplete
	KindUnreachable   Kind = "unreachable"    // no NAT hook reaches the rule's chain: no packet runs it (info)
	// The DNS path (dns.go).
	KindDNSConntrack Kind = "dns-conntrack" // port-53 service DNAT through conntrack, no NOTRACK
	KindDNSSNAT      Kind = "dns-snat-race" // UDP through SNAT without fully-random: cross-pod reply clashes
	KindDNSNoTrack   Kind = "dns-notrack"   // NodeLocal DNSCache-style NOTRACK for port 53 (info)
)

// Finding is one thing to fix or know.
type Finding struct {
	Severity Severity `json:"severity"`
	Kind     Kind     `json:"kind"`
	// Rule is the text of the rule the finding is about, "" for host-wide
	// findings; RuleIndex is its index in Report.Rules, -1 for none.
	Rule      string        `json:"rule,omitempty"`
	RuleIndex int           `json:"rule_index"`
	Owner     ruleset.Owner `json:"owner,omitempty"`
	Message   string        `json:"message"`
	Evidence  []string      `json:"evidence,omitempty"`
	Remedy    string        `json:"remedy,omitempty"`
}

// Conntrack is the counter input of an audit.
type Conntrack struct {
	// Now is the latest reading: counters since the namespace was created.
	Now ctstat.Snapshot
	// Delta is Now minus a reading Interval earlier; unset when Interval is 0.
	Delta    ctstat.Snapshot
	Interval time.Duration
	// Max is nf_conntrack_max, 0 when unknown.
	Max uint64
}

// Input is everything an audit looks at.
type Input struct {
	Rules *ruleset.Ruleset
	// Kernel is the kernel release ("6.18.44-fc"), "" when unknown (a dump
	// from another host).
	Kernel string
	// Iptables is the iptables userspace version ("1.8.9"), "" when unknown;
	// versions found in dump headers are used when it is empty.
	Iptables string
	// Conntrack is nil when counters were not read (dumps).
	Conntrack *Conntrack
	// DNS is what the dumps say about the DNS path (ScanDNS); nil when no
	// dump text was scanned.
	DNS *DNSPath
	// TSOffsets is how the kernel offsets TCP timestamps (probed, or from
	// its version); nil when not known. PAWS is the namespace's own PAWS
	// counters; nil when not read.
	TSOffsets *tsoffset.Detection
	PAWS      *PAWSEvidence
}

// Report is the outcome of an audit.
type Report struct {
	Summary   string           `json:"summary"`
	Kernel    string           `json:"kernel,omitempty"`
	Iptables  string           `json:"iptables,omitempty"`
	Sources   []ruleset.Source `json:"sources"`
	Rules     []RuleView       `json:"rules"`
	Findings  []Finding        `json:"findings"`
	Conntrack *ConntrackView   `json:"conntrack"`
	DNS       *DNSPath         `json:"dns,omitempty"` // the DNS path's service and NOTRACK rules, when scanned
	// TSOffsets and PAWS are the inputs of the paws-timewait findings.
	TSOffsets *tsoffset.Detection `json:"ts_offsets,omitempty"`
	PAWS      *PAWSEvidence       `json:"paws,omitempty"`
	Warnings  []string            `json:"warnings,omitempty"`
	// ReadErrors are the sources of rules that could not be read: the
	// audit saw none of their rules.
	ReadErrors []ruleset.ReadError `json:"read_errors,omitempty"`
	Owners     []ruleset.Owner     `json:"owners"`
	Counts     map[string]int      `json:"severity_counts"`
	rules      []ruleset.Rule      // for the text report
	remedies   map[ruleset.Owner]string
}

// HasFindings reports whether any finding is at least min.
func (r *Report) HasFindings(min Severity) bool {
	for _, f := range r.Findings {
		if f.Severity >= min {
			return true
		}
	}
	return false
}

// RuleView is a rule as the JSON report shows it.
type RuleView struct {
	ruleset.Location
	Hook          string        `json:"hook,omitempty"`
	Unreachable   bool          `json:"unreachable,omitempty"` // no NAT hook reaches its chain
	Match         string        `json:"match,omitempty"`
	Action        string        `json:"action"`
	Mode          string        `json:"mode"`
	Addresses     string        `json:"addresses,omitempty"`
	Ports         string        `json:"ports"`
	Random        bool          `json:"random"`
	FullyRandom   bool          `json:"fully_random"`
	Persistent    bool          `json:"persistent"`
	FlagsKnown    bool          `json:"flags_known"`
	Comment       string        `json:"comment,omitempty"`
	Owner         ruleset.Owner `json:"owner"`
	OwnerEvidence string        `json:"owner_evidence,omitempty"`
	Line          int           `json:"line,omitempty"`
	Rule          string        `json:"rule"`
}

func viewOf(r *ruleset.Rule) RuleView {
	v := RuleView{
		Location: r.Location, Hook: r.Hook, Unreachable: r.Unreachable, Match: r.Match, Action: r.NAT.Action.String(),
		Mode: r.NAT.String(), Ports: r.Ports(), Random: r.NAT.Random, FullyRandom: r.NAT.FullyRandom,
		Persistent: r.NAT.Persistent, FlagsKnown: r.FlagsKnown, Comment: r.Comment, Owner: r.Owner,
		OwnerEvidence: r.OwnerEvidence, Line: r.Line, Rule: r.Text,
	}
	if r.NAT.AddrMin.IsValid() {
		v.Addresses = r.NAT.AddrMin.String()
		if r.NAT.AddrMax != r.NAT.AddrMin {
			v.Addresses += "-" + r.NAT.AddrMax.String()
		}
	}
	return v
}

// Run audits in and returns the report. Findings are sorted by severity,
// worst first, then by rule order.
func Run(in Input) *Report {
	rs := in.Rules
	if rs == nil {
		rs = &ruleset.Ruleset{}
	}
	rep := &Report{
		Kernel: in.Kernel, Iptables: in.Iptables, Sources: rs.Sources, Warnings: rs.Warnings, ReadErrors: rs.ReadErrors,
		rules: rs.Rules, remedies: map[ruleset.Owner]string{}, Counts: map[string]int{},
		Rules: make([]RuleView, 0, len(rs.Rules)), Findings: []Finding{},
	}
	if rep.Iptables == "" {
		for _, s := range rs.Sources {
			if s.Version != "" && s.Backend.IsIptables() {
				rep.Iptables = s.Version
			}
		}
	}
	kv, kerr := kernel.ParseVersion(in.Kernel)
	kernelKnown := kerr == nil
	preRover := kernelKnown && !kv.AtLeast(5, 0)

	racy := 0    // rules that can race through port preservation or the rover
	racyUDP := 0 // of those, rules that carry UDP too (dns.go)
	seenOwner := map[ruleset.Owner]bool{}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		rep.Rules = append(rep.Rules, viewOf(r))
		if !seenOwner[r.Owner] {
			seenOwner[r.Owner] = true
			rep.Owners = append(rep.Owners, r.Owner)
		}
		fs := ruleFindings(r, i, preRover, kernelKnown, in.Kernel)
		if racyForUDP(r) {
			racyUDP++
		}
		for _, f := range fs {
			if f.Kind == KindNoFullyRandom || f.Kind == KindRandomOnly && preRover {
				racy++
			}
			if f.Remedy != "" {
				rep.remedies[r.Owner] = f.Remedy
			}
		}
		rep.Findings = append(rep.Findings, fs...)
	}
	rep.Findings = append(rep.Findings, hostFindings(rs, rep.Iptables, kv, kernelKnown, in.Kernel)...)
	rep.DNS = in.DNS
	rep.Findings = append(rep.Findings, dnsFindings(in.DNS, racyUDP, kv, kernelKnown)...)
	rep.TSOffsets, rep.PAWS = in.TSOffsets, in.PAWS
	rep.Findings = append(rep.Findings, pawsFindings(rs.Rules, in.TSOffsets, in.PAWS)...)
	if in.Conntrack != nil {
		view, fs := conntrackFindings(in.Conntrack, racy)
		rep.Conntrack = view
		rep.Findings = append(rep.Findings, fs...)
	}
	sort.SliceStable(rep.Findings, func(a, b int) bool { return rep.Findings[a].Severity > rep.Findings[b].Severity })
	for _, f := range rep.Findings {
		rep.Counts[f.Severity.String()]++
	}
	rep.Summary = summaryLine(rep)
	return rep
}

// ruleFindings judges one rule.
func ruleFindings(r *ruleset.Rule, idx int, preRover, kernelKnown bool, release string) []Finding {
	var out []Finding
	add := func(sev Severity, kind Kind, msg string, ev ...string) {
		out = append(out, Finding{
			Severity: sev, Kind: kind, Rule: r.Text, RuleIndex: idx, Owner: r.Owner,
			Message: msg, Evidence: ev, Remedy: Remedy(r, kind),
		})
	}
	if r.Unreachable {
		add(Info, KindUnreachable, fmt.Sprintf("%s rule in chain %s, which no NAT hook reaches (nothing jumps to it): no packet runs it, so it cannot race; not judged further", r.NAT.Action, r.Chain),
			"no jump, goto or verdict map leads to "+r.Chain+" from a base chain of its table")
		return out
	}
	m := r.NAT
	pod := r.Owner.IsPodTraffic()
	who := "traffic"
	if pod {
		who = "pod/container traffic"
	}
	switch {
	case !r.FlagsKnown:
		add(Low, KindFlagsUnknown, fmt.Sprintf("%s rule whose flags this dump does not show (nft -j hides iptables-nft target options)", m.Action),
			"audit the host live, or give an iptables-save or nft text dump")
	case !m.Random && !m.FullyRandom:
		sev := Medium
		if pod {
			sev = High
		}
		if preRover {
			sev = High
		}
		msg := fmt.Sprintf("%s without fully-random: %s keeps its source port when free, so two flows from different sources with the same port to one destination race at conntrack confirm and one SYN is dropped (1 s retransmit)", m.Action, who)
		if preRover {
			msg = fmt.Sprintf("%s without fully-random on kernel %s: every CPU starts its port search at one shared rover, so concurrent flows pick the same port and SYNs are dropped", m.Action, release)
		}
		add(sev, KindNoFullyRandom, msg, "mode: "+m.String())
	case m.Random && !m.FullyRandom:
		switch {
		case preRover:
			add(High, KindRandomOnly, fmt.Sprintf("%s random on kernel %s: the search starts at a hash of (nat ip, dst ip, dst port), the same for every flow to one destination, so it races like plain masquerade", m.Action, release), "mode: "+m.String())
		case kernelKnown:
			add(Low, KindRandomOnly, fmt.Sprintf("%s random without fully-random: on kernel %s random already skips port preservation, but the same rule races on kernels before 5.0 (and stable backports differ)", m.Action, release), "mode: "+m.String())
		default:
			add(Medium, KindRandomOnly, fmt.Sprintf("%s random without fully-random: no better than plain on kernels before 5.0; equivalent to fully-random on 5.0 and later", m.Action), "mode: "+m.String())
		}
	}
	if m.HasPorts() {
		n := int(m.PortMax) - int(m.PortMin) + 1
		switch {
		case n == 1:
			add(High, KindSinglePort, fmt.Sprintf("one source port (%d): two concurrent flows to the same destination always get the same tuple and one is dropped, whatever the flags", m.PortMin), "ports: "+r.Ports())
		case n < 1024:
			sev := Medium
			if n < 64 {
				sev = High
			}
			add(sev, KindNarrowPorts, fmt.Sprintf("only %d source ports: at most %d concurrent flows per destination before exhaustion, and random searches collide about once in %d concurrent pairs", n, n, n), "ports: "+r.Ports())
		}
	}
	return out
}

// hostFindings judges what is not about one rule: versions and backends.
func hostFindings(rs *ruleset.Ruleset, ipt string, kv kernel.Version, kernelKnown bool, release string) []Finding {
	var out []Finding
	host := func(sev Severity, kind Kind, msg, remedy string, ev ...string) {
		out = append(out, Finding{Severity: sev, Kind: kind, RuleIndex: -1, Message: msg, Evidence: ev, Remedy: remedy})
	}
	if iv, err := kernel.ParseVersion(ipt); err == nil && iv.Less(kernel.Version{Major: 1, Minor: 6, Patch: 2}) {
		plainIpt := 0
		for _, r := range rs.Rules {
			if r.Backend.IsIptables() && !r.NAT.FullyRandom {
				plainIpt++
			}
		}
		host(Medium, KindOldIptables, fmt.Sprintf("iptables %s cannot write MASQUERADE --random-fully (needs 1.6.2; SNAT needs 1.6.0): owners that add it when supported (kube-proxy, flannel, Calico) silently leave it out; %d iptables rules lack it", ipt, plainIpt),
			"upgrade iptables on the host and in the agents' images to 1.6.2 or later", "iptables version "+ipt)
	}
	if kernelKnown && !kv.AtLeast(5, 0) && len(rs.Rules) > 0 {
		host(High, KindKernelRover, fmt.Sprintf("kernel %s predates 5.0: port selection starts at a global rover shared by all CPUs (unless the stable backport of 2022 is in), so plain and random rules race far more often; only fully-random avoids it", release),
			"make every SNAT rule fully-random (snatrace fix), or move to a 5.x+ kernel", "kernel "+release)
	}
	for _, e := range rs.ReadErrors {
		host(Medium, KindNotRead, fmt.Sprintf("the %s rules could not be read (%s): this audit does not include them, and a racing rule among them would go unreported", e.Backend, e.Source),
			notReadRemedy(e), e.Err)
	}
	if rs.MixedBackends() {
		counts := map[ruleset.Backend]int{}
		for _, r := range rs.Rules {
			counts[r.Backend]++
		}
		host(Low, KindMixedBackends, fmt.Sprintf("NAT rules live in both iptables-legacy (%d) and nftables (%d native, %d iptables-nft): the kernel runs both, but `iptables` and `nft list ruleset` each show only part of them, a classic source of confusion",
			counts[natrule.IptablesLegacy], counts[natrule.Nftables], counts[natrule.IptablesNFT]),
			"make every agent on the node use the same iptables flavour (update-alternatives --set iptables ...), then remove the stale legacy rules")
	}
	return out
}

// notReadRemedy says what a read of e's source needs.
func notReadRemedy(e ruleset.ReadError) string {
	switch e.Backend {
	case natrule.IptablesLegacy:
		return "iptables-legacy-save needs CAP_NET_ADMIN and CAP_NET_RAW (it reads the tables through a raw socket): run as root, or grant both"
	case natrule.Nftables:
		return "reading nftables over netlink needs CAP_NET_ADMIN in the namespace"
	}
	return "install iptables-nft-save (Debian package iptables) and run with CAP_NET_ADMIN"
}

// summaryLine is the one line a human reads first.
func summaryLine(rep *Report) string {
	var b strings.Builder
	owners := map[ruleset.Owner]int{}
	for _, r := range rep.Rules {
		owners[r.Owner]++
	}
	parts := make([]string, 0, len(rep.Owners))
	for _, o := range rep.Owners {
		parts = append(parts, fmt.Sprintf("%s %d", o, owners[o]))
	}
	fmt.Fprintf(&b, "%d source-NAT %s", len(rep.Rules), text.Plural(len(rep.Rules), "rule", "rules"))
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	if len(rep.Findings) == 0 {
		b.WriteString("; no findings")
	} else {
		var sev []string
		for s := Critical; s >= Info; s-- {
			if n := rep.Counts[s.String()]; n > 0 {
				sev = append(sev, fmt.Sprintf("%d %s", n, s))
			}
		}
		fmt.Fprintf(&b, "; %d %s (%s)", len(rep.Findings), text.Plural(len(rep.Findings), "finding", "findings"), strings.Join(sev, ", "))
	}
	if c := rep.Conntrack; c != nil {
		if c.IntervalSeconds > 0 {
			fmt.Fprintf(&b, "; insert_failed %.1f/s, drop %.1f/s over %gs", c.Rates.InsertFailed, c.Rates.Drop, c.IntervalSeconds)
		}
		if c.Max > 0 {
			fmt.Fprintf(&b, "; conntrack table %.0f%% full", 100*c.Fill)
		}
	}
	return b.String()
}
