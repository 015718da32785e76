package audit

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/ruleset"
)

// DNSPath is what a node's rules say about its pods' DNS traffic: the
// rules that DNAT port 53 (kube-proxy's cluster-DNS service, kube-dns) and
// the rules that exempt port 53 from conntrack (NodeLocal DNSCache's
// NOTRACK). UDP queries that conntrack tracks through NAT race at confirm
// like SYNs do; the kernel resolves some of the clashes and drops the rest,
// each a resolver timeout (5 s with glibc) for the client.
type DNSPath struct {
	// Scanned names the dumps read ("iptables-nft-save", "nft list
	// ruleset", a file name).
	Scanned []string `json:"scanned"`
	// Service are the rules that DNAT UDP port 53 to a backend, or send it
	// to kube-proxy's service chains.
	Service []string `json:"service_rules,omitempty"`
	// NoTrack are the rules that take port 53 out of conntrack (raw table
	// NOTRACK, CT --notrack, nft notrack).
	NoTrack []string `json:"notrack_rules,omitempty"`
}

var (
	dport53    = regexp.MustCompile(`(--dport|dport|--sport|sport|--to-destination [0-9.\[\]:a-f]+:|dnat to [0-9.\[\]:a-f]+:|dnat ip to [0-9.]+:|\. )\s?53\b`)
	svcJump    = regexp.MustCompile(`-j (KUBE-SVC-|KUBE-EXT-|KUBE-FW-|DNAT)|\bdnat\b|goto service-|jump service-`)
	notrackRe  = regexp.MustCompile(`-j NOTRACK|-j CT --notrack|\bnotrack\b`)
	kubeDNSRe  = regexp.MustCompile(`kube-dns`)
	iptTableRe = regexp.MustCompile(`^\*(\w+)`)
)

// ScanDNS adds to p what one dump says about the DNS path: iptables-save
// output (every table; -S and -L forms read line by line too) or nft list
// ruleset text. It recognises rules by their words, not by a full parse:
// a rule naming port 53 that DNATs (or jumps to kube-proxy's service
// chains) is a service rule, one naming port 53 that untracks is a NOTRACK
// rule.
func ScanDNS(p *DNSPath, source, text string) {
	p.Scanned = append(p.Scanned, source)
	table := ""
	for rest := text; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "*") {
			if m := iptTableRe.FindStringSubmatch(line); m != nil {
				table = m[1]
				continue
			}
		}
		if !dnsCandidate(line) {
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") || !(dport53.MatchString(line) || kubeDNSRe.MatchString(line)) {
			continue
		}
		switch {
		case notrackRe.MatchString(line) && (table == "" || table == "raw"):
			p.NoTrack = append(p.NoTrack, line)
		case svcJump.MatchString(line) && (table == "" || table == "nat"):
			p.Service = append(p.Service, line)
		}
	}
}

// dnsCandidate reports whether ScanDNS looks at line with its regular
// expressions: cheap words first, since a kube-proxy dump has 1e5 lines and
// every line the expressions look at costs microseconds.
func dnsCandidate(line string) bool {
	return mayName53(line) || strings.Contains(line, "kube-dns")
}

// mayName53 reports whether line holds a "53" that dport53 could match:
// one that ends a word and follows an option's last letter ("dport53"),
// a colon (":53") or a space. A kube-proxy table's chain hashes and
// addresses hold "53" in one line of twenty; nearly none of those pass.
func mayName53(line string) bool {
	for i := 0; ; {
		k := strings.Index(line[i:], "53")
		if k < 0 {
			return false
		}
		k += i
		end := k + 2
		if k > 0 && strings.IndexByte("t: \t\n\v\f\r", line[k-1]) >= 0 && (end == len(line) || !isWordByte(line[end])) {
			return true
		}
		i = k + 1
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// DNS remedies, with their trade-offs; shared by the findings below.
const (
	remedyNodeLocal = "NodeLocal DNSCache: pods query a cache on the node (169.254.20.10, or the kube-dns IP in its interception mode) " +
		"that the node exempts from conntrack (NOTRACK), so pod DNS never races at confirm; the cache reaches CoreDNS over TCP. " +
		"Trade-off: one more DaemonSet and hop, and kubelet's clusterDNS (or the interception rules) to manage"
	remedyFullyRandom = "fully-random on the SNAT rule (its owner's setting, or `snatrace fix --apply --watch`): two pods' queries " +
		"no longer keep the same node port, so their reply tuples stop clashing (the lab measures >= 100x fewer lost queries). " +
		"Trade-off: source ports are no longer preserved (rarely needed for DNS)"
	remedyReopen = "glibc `options single-request-reopen` in the pods' resolv.conf (dnsConfig): after a lost answer, A and AAAA are sent " +
		"one after another from new sockets, so the retry does not race again. Trade-off: glibc only (musl/Alpine ignores it), " +
		"and the first timeout is still paid; `single-request` makes every lookup sequential (slower)"
	remedyTCP = "DNS over TCP (`options use-vc`): a SYN lost to the race costs 1 s instead of a 5 s resolver timeout, and the " +
		"connection is reused. Trade-off: TCP has no clash resolution at all, CoreDNS holds a connection per client, glibc only"
	remedyKernel56 = "a kernel >= 5.6 resolves parallel queries DNATed to different backends (\"conntrack: allow insertion of clashing entries\")"
)

// dnsFindings judges the DNS path against the SNAT rules and the kernel:
// the service DNATed through conntrack without NOTRACK (high on kernels
// before 5.6), UDP through a port-preserving SNAT on a node that has the
// service, and NOTRACK for DNS found (info). racyUDP counts SNAT rules
// without fully-random that match UDP.
func dnsFindings(p *DNSPath, racyUDP int, kv kernel.Version, kernelKnown bool) []Finding {
	if p == nil {
		return nil
	}
	var out []Finding
	host := func(sev Severity, kind Kind, msg string, evidence []string, remedies ...string) {
		out = append(out, Finding{Severity: sev, Kind: kind, RuleIndex: -1, Message: msg, Evidence: evidence, Remedy: strings.Join(remedies, "; or ")})
	}
	if len(p.NoTrack) > 0 {
		host(Info, KindDNSNoTrack, fmt.Sprintf("%d rule(s) exempt DNS (port 53) from conntrack, as NodeLocal DNSCache installs: queries to that address cannot race at confirm", len(p.NoTrack)),
			first(p.NoTrack, 3))
	}
	if len(p.Service) > 0 && len(p.NoTrack) == 0 {
		sev, when := Medium, "on this kernel the parallel A/AAAA queries of one socket that the service sends to different backends are resolved (5.6+), but queries that meet on one SNAT port are not"
		switch {
		case !kernelKnown:
			sev, when = Medium, "whether parallel A/AAAA queries DNATed to different backends are resolved depends on the kernel (5.6+); give --kernel"
		case !kv.AtLeast(5, 6):
			sev, when = High, fmt.Sprintf("kernel %d.%d drops one of two parallel A/AAAA queries of one socket that the service sends to different backends (resolved only from 5.6): the famous 5 s DNS delays", kv.Major, kv.Minor)
		}
		host(sev, KindDNSConntrack, fmt.Sprintf("%d rule(s) DNAT UDP port 53 (the cluster-DNS service) through conntrack, with no NOTRACK for DNS: %s", len(p.Service), when),
			first(p.Service, 3), remedyNodeLocal, remedyReopen, remedyTCP, remedyKernel56)
	}
	// Only on a node with a cluster-DNS service (a Kubernetes node): on any
	// other host the rule's no-fully-random finding says it already.
	if racyUDP > 0 && len(p.Service) > 0 && len(p.NoTrack) == 0 {
		host(Medium, KindDNSSNAT, fmt.Sprintf("%d SNAT rule(s) without fully-random also carry UDP: two pods whose queries to one resolver leave from the same source port keep it, "+
			"and the second clashes in the reply direction, which no kernel resolves (checked through 6.12/6.18): the query is dropped (insert_failed, drop) and its client waits its timeout", racyUDP),
			nil, remedyFullyRandom, remedyNodeLocal, remedyReopen, remedyTCP)
	}
	return out
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// racyForUDP reports whether r is an SNAT rule that matches UDP and keeps
// source ports (no fully-random): the cross-pod reply clash.
func racyForUDP(r *ruleset.Rule) bool {
	if r.NAT.FullyRandom || !r.FlagsKnown || r.Unreachable {
		return false
	}
	m := " " + r.Match + " " + r.Text + " "
	return !strings.Contains(m, "-p tcp") && !strings.Contains(m, "l4proto tcp") && !strings.Contains(m, "ip protocol tcp") && !strings.Contains(m, " tcp ")
}
