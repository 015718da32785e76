package exporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/snatrace/snatrace/trace"
)

// DefaultClashDestinations bounds the dst label of snatrace_snat_clash_drops_total.
const DefaultClashDestinations = 20

// ClashDrops counts the SNAT-clash drops the eBPF tracer attributes, by
// destination: snatrace_snat_clash_drops_total{dst} for TCP SYNs and
// snatrace_udp_snat_clash_drops_total{dst} for UDP datagrams (DNS queries:
// each a resolver timeout for its client), and the UDP clashes the kernel
// resolved without loss, snatrace_udp_clashes_resolved_total{how} (fexit
// mode only). The first limit destinations seen get their own label and
// every later one is "other", so the series count is bounded and every
// counter stays monotonic. Register it with HandlerOpts.Extra and feed it
// the tracer's events with Observe.
type ClashDrops struct {
	labels   *trace.DestLabels
	vec      *prometheus.CounterVec
	udp      *prometheus.CounterVec
	resolved *prometheus.CounterVec
}

// NewClashDrops returns a ClashDrops naming at most limit destinations.
func NewClashDrops(limit int) *ClashDrops {
	return &ClashDrops{
		labels: trace.NewDestLabels(limit),
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snatrace_snat_clash_drops_total",
			Help: "TCP SYNs dropped because their SNAT tuple clashed at conntrack confirm, as attributed by the eBPF tracer, by destination (first N destinations seen, then \"other\").",
		}, []string{"dst"}),
		udp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snatrace_udp_snat_clash_drops_total",
			Help: "UDP datagrams (DNS queries: each a resolver timeout, 5 s with glibc) dropped because their SNAT tuple clashed at conntrack confirm, as attributed by the eBPF tracer, by destination (first N destinations seen, then \"other\").",
		}, []string{"dst"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snatrace_udp_clashes_resolved_total",
			Help: "UDP clashes at conntrack confirm that the kernel resolved without loss, as seen by the eBPF tracer's fexit program: merged (into the winning entry) or inserted (reply direction only, 5.6+).",
		}, []string{"how"}),
	}
}

// Observe counts ev if it is an SNAT clash or a resolved UDP clash; other
// drops are ignored.
func (c *ClashDrops) Observe(ev trace.Event) {
	switch {
	case ev.Kind == trace.KindClashMerged:
		c.resolved.WithLabelValues("merged").Inc()
	case ev.Kind == trace.KindClashInserted:
		c.resolved.WithLabelValues("inserted").Inc()
	case ev.Kind != trace.KindSNATClash:
	case ev.Proto == "udp":
		c.udp.WithLabelValues(c.labels.Label(ev.Orig.Dst)).Inc()
	default:
		c.vec.WithLabelValues(c.labels.Label(ev.Orig.Dst)).Inc()
	}
}

// Describe implements prometheus.Collector.
func (c *ClashDrops) Describe(ch chan<- *prometheus.Desc) {
	c.vec.Describe(ch)
	c.udp.Describe(ch)
	c.resolved.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *ClashDrops) Collect(ch chan<- prometheus.Metric) {
	c.vec.Collect(ch)
	c.udp.Collect(ch)
	c.resolved.Collect(ch)
}
