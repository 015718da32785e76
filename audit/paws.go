package audit

import (
	"fmt"
	"strings"
	"time"

	"github.com/snatrace/snatrace/internal/netstat"
	"github.com/snatrace/snatrace/report/text"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tsoffset"
)

// KindPAWSRemap: a rule that maps other source ports onto one tuple
// (fully-random, random, or a port range the sources fall outside) on a
// kernel whose TCP timestamp offset depends on the ports: SYNs of short
// connections remapped onto a tuple a server still holds in TIME_WAIT are
// rejected by the server's PAWS check.
const KindPAWSRemap Kind = "paws-timewait"

// KindTSOffsetsUnknown: remapping rules on a kernel whose timestamp
// offsets could not be probed and are not known from its version.
const KindTSOffsetsUnknown Kind = "ts-offsets-unknown"

// PAWSEvidence is the audited namespace's own TcpExt counters of SYNs that
// its TIME_WAIT sockets rejected by PAWS: they count only for servers in
// that namespace (a node's own services, host-network pods), never for the
// remote servers that its NATed traffic reaches.
type PAWSEvidence struct {
	// Counter is "PAWSTimewait" (6.16+) or "PAWSEstab" (earlier kernels
	// counted the TIME_WAIT rejections there, with established sockets').
	Counter string `json:"counter"`
	Total   uint64 `json:"total"`
	// Rise is the increase over Interval (0 when no interval was measured).
	Rise     uint64        `json:"rise"`
	Interval time.Duration `json:"interval_ns,omitempty"`
}

// PAWSFrom reads the evidence from two readings of netstat counters,
// before (nil: none) and after an interval.
func PAWSFrom(before, after netstat.Counters, interval time.Duration) *PAWSEvidence {
	name := "PAWSTimewait"
	now, ok := after.Get("TcpExt", name)
	if !ok {
		name = "PAWSEstab"
		now, _ = after.Get("TcpExt", name)
	}
	e := &PAWSEvidence{Counter: name, Total: now}
	if before != nil {
		was, _ := before.Get("TcpExt", name)
		e.Rise, e.Interval = now-min(now, was), interval
	}
	return e
}

// remaps reports whether r can map a flow onto a source port other than
// its own: the random flags always do, a port range does for every source
// port outside it.
func remaps(r *ruleset.Rule) bool {
	return r.FlagsKnown && !r.Unreachable && (r.NAT.Random || r.NAT.FullyRandom || r.NAT.HasPorts())
}

// pawsFindings judges the remapping rules against the kernel's timestamp
// offsets. Info when nothing shows the effect (the audit cannot see the
// traffic's shape); medium when the namespace's own TIME_WAIT sockets
// rejected SYNs by PAWS during the interval.
func pawsFindings(rules []ruleset.Rule, ts *tsoffset.Detection, ev *PAWSEvidence) []Finding {
	if ts == nil || ts.Kind == tsoffset.PerAddress || ts.Kind == tsoffset.NoTimestamps {
		return nil
	}
	var idx []int
	for i := range rules {
		if remaps(&rules[i]) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	evidence := []string{fmt.Sprintf("TCP timestamp offsets: %s (%s)", ts.Kind, ts.Reason)}
	if ev != nil {
		evidence = append(evidence, ev.String())
	}
	if ts.Kind == tsoffset.Unknown {
		return []Finding{{Severity: Info, Kind: KindTSOffsetsUnknown, RuleIndex: -1, Evidence: evidence, Remedy: pawsRemedy,
			Message: fmt.Sprintf("%d source-NAT %s remap source ports; whether this kernel's TCP timestamp offsets depend on the ports is unknown: if they do (7.0, stable 6.12.94 and 6.1.191 on), short connections remapped onto a tuple a server still holds in TIME_WAIT lose their SYN to the server's PAWS check",
				len(idx), text.Plural(len(idx), "rule", "rules"))}}
	}
	sev := Info
	if ev != nil && ev.Rise > 0 {
		sev = Medium
	}
	var out []Finding
	for _, i := range idx {
		r := &rules[i]
		out = append(out, Finding{Severity: sev, Kind: KindPAWSRemap, Rule: r.Text, RuleIndex: i, Owner: r.Owner, Evidence: evidence, Remedy: pawsRemedy,
			Message: fmt.Sprintf("%s maps flows onto source ports other than their own, and this kernel's TCP timestamp offsets depend on the ports: a short connection (one the server closes first: HTTP/1.0, health checks, a connection per request) remapped onto a tuple the server still holds in TIME_WAIT (60 s) carries an unrelated timestamp, and the server's PAWS check rejects about half of such SYNs (a retransmission: ms, or 2 s when the retry is rejected again). Not a reason to drop fully-random where the SNAT race is the bigger cost: measure both with snatrace lab --workload short", r.NAT)})
	}
	return out
}

// pawsRemedy names the alternatives to weigh (docs/fix.md#paws).
const pawsRemedy = "for the traffic that makes many short connections to one server port: reuse connections (HTTP keep-alive), or keep port preservation on its rule (snatrace fix --exclude owner=NAME or chain=NAME, where the SNAT race is not happening: it remaps only pods that meet on one port number, so fewer rejections, none for a single client); a wider pods' ip_local_port_range, more NAT addresses or a wider NAT port range lower the odds without removing them; net.ipv4.tcp_tw_reuse (client-side TIME_WAIT) and turning timestamps off (the server then judges the SYN by its sequence number, hashed with the ports too) are not fixes (docs/paws.md)"

// String is the evidence line of a PAWS finding.
func (e *PAWSEvidence) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "this namespace's TcpExt %s: %d since it started", e.Counter, e.Total)
	if e.Interval > 0 {
		fmt.Fprintf(&b, ", +%d in %s", e.Rise, e.Interval)
	}
	b.WriteString(" (its own servers' TIME_WAIT sockets only)")
	return b.String()
}
