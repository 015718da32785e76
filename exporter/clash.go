package exporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/snatrace/snatrace/trace"
)

// DefaultClashDestinations bounds the dst label of snatrace_snat_clash_drops_total.
const DefaultClashDestinations = 20

// ClashDrops counts the SNAT-clash SYN drops the eBPF tracer attributes, by
// destination: snatrace_snat_clash_drops_total{dst}. The first limit
// destinations seen get their own label and every later one is "other", so
// the series count is bounded and every counter stays monotonic. Register it
// with HandlerOpts.Extra and feed it the tracer's events with Observe.
type ClashDrops struct {
	labels *trace.DestLabels
	vec    *prometheus.CounterVec
}

// NewClashDrops returns a ClashDrops naming at most limit destinations.
func NewClashDrops(limit int) *ClashDrops {
	return &ClashDrops{
		labels: trace.NewDestLabels(limit),
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snatrace_snat_clash_drops_total",
			Help: "TCP SYNs dropped because their SNAT tuple clashed at conntrack confirm, as attributed by the eBPF tracer, by destination (first N destinations seen, then \"other\").",
		}, []string{"dst"}),
	}
}

// Observe counts ev if it is an SNAT clash; other drops are ignored.
func (c *ClashDrops) Observe(ev trace.Event) {
	if ev.Kind != trace.KindSNATClash {
		return
	}
	c.vec.WithLabelValues(c.labels.Label(ev.Orig.Dst)).Inc()
}

// Describe implements prometheus.Collector.
func (c *ClashDrops) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *ClashDrops) Collect(ch chan<- prometheus.Metric) { c.vec.Collect(ch) }
