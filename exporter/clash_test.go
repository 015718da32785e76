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
