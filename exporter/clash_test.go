package exporter

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/snatrace/snatrace/trace"
)

func TestClashDrops(t *testing.T) {
	c := NewClashDrops(2)
	ev := func(dst string, kind trace.Kind) trace.Event {
		return trace.Event{Kind: kind, Orig: trace.Tuple{Src: netip.MustParseAddrPort("10.98.0.2:40000"), Dst: netip.MustParseAddrPort(dst)}}
	}
	for _, e := range []trace.Event{
		ev("198.51.100.2:80", trace.KindSNATClash),
		ev("198.51.100.2:80", trace.KindSNATClash),
		ev("198.51.100.2:443", trace.KindSNATClash),
		ev("198.51.100.9:80", trace.KindSNATClash), // third destination: "other"
		ev("198.51.100.2:80", trace.KindOtherDrop), // a firewall drop: not counted
		ev("198.51.100.2:443", trace.KindSNATClash),
	} {
		c.Observe(e)
	}
	want := `# HELP snatrace_snat_clash_drops_total TCP SYNs dropped because their SNAT tuple clashed at conntrack confirm, as attributed by the eBPF tracer, by destination (first N destinations seen, then "other").
# TYPE snatrace_snat_clash_drops_total counter
snatrace_snat_clash_drops_total{dst="198.51.100.2:443"} 2
snatrace_snat_clash_drops_total{dst="198.51.100.2:80"} 2
snatrace_snat_clash_drops_total{dst="other"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// UDP drops are counted apart from TCP's, by destination with the same
// label budget, and resolved clashes by how they were resolved.
func TestClashDropsUDP(t *testing.T) {
	c := NewClashDrops(2)
	ev := func(dst string, kind trace.Kind, proto string) trace.Event {
		return trace.Event{Kind: kind, Proto: proto, Orig: trace.Tuple{Src: netip.MustParseAddrPort("10.98.0.2:40000"), Dst: netip.MustParseAddrPort(dst)}}
	}
	for _, e := range []trace.Event{
		ev("198.51.100.2:53", trace.KindSNATClash, "udp"),
		ev("198.51.100.2:53", trace.KindSNATClash, "udp"),
		ev("198.51.100.2:80", trace.KindSNATClash, "tcp"),
		ev("198.51.100.2:53", trace.KindClashMerged, "udp"),
		ev("198.51.100.2:53", trace.KindClashInserted, "udp"),
		ev("198.51.100.2:53", trace.KindClashMerged, "udp"),
		ev("198.51.100.2:53", trace.KindOtherDrop, "udp"),
	} {
		c.Observe(e)
	}
	for name, want := range map[string]string{
		"snatrace_udp_snat_clash_drops_total": "\nsnatrace_udp_snat_clash_drops_total{dst=\"198.51.100.2:53\"} 2\n",
		"snatrace_snat_clash_drops_total":     "\nsnatrace_snat_clash_drops_total{dst=\"198.51.100.2:80\"} 1\n",
		"snatrace_udp_clashes_resolved_total": "\nsnatrace_udp_clashes_resolved_total{how=\"inserted\"} 1\nsnatrace_udp_clashes_resolved_total{how=\"merged\"} 2\n",
	} {
		got := string(exposition(t, c))
		if !strings.Contains(got, want) {
			t.Errorf("%s: want %q in\n%s", name, want, got)
		}
	}
}
