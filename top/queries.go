package top

import (
	"math"
	"sort"
	"time"

	"github.com/prometheus/common/model"
)

// field says where one query's values go in a node's row.
type field int

const (
	fSeen field = iota // exporters seen in the last hour: the rows
	fLive
	fRacing // by owner
	fRules
	fRate
	fClashes
	fEntries
	fMax
	fAudit
	fFailing // by source
)

type query struct {
	f    field
	expr string
}

// queries are the PromQL queries of one report, over window w (a PromQL
// duration). They use the exporter's raw series, never the recording rules.
// The first gives the rows: Query asks it alone, first.
func queries(w string) []query {
	const by = " by (instance, node) "
	return []query{
		{fSeen, "max" + by + "(max_over_time(snatrace_build_info[1h]))"},
		{fLive, "max" + by + "(snatrace_build_info)"},
		// The racing rules of the alert rules (deploy/prometheus), by owner.
		{fRacing, `sum by (instance, node, owner) (snatrace_snat_rules{randomness="none"} or ` +
			`(snatrace_snat_rules{randomness="random"} * on (instance) group_left () snatrace_kernel_info{era="legacy"}))`},
		{fRules, "sum" + by + "(snatrace_snat_rules)"},
		{fRate, "sum" + by + "(rate(snatrace_conntrack_insert_failed_total[" + w + "]))"},
		// The exact rise within the window: kernel counters only reset
		// with the node, not with the exporter.
		{fClashes, "sum" + by + "(max_over_time(snatrace_conntrack_insert_failed_total[" + w + "]) - " +
			"min_over_time(snatrace_conntrack_insert_failed_total[" + w + "]))"},
		{fEntries, "max" + by + "(snatrace_conntrack_entries)"},
		{fMax, "max" + by + "(snatrace_conntrack_max)"},
		{fAudit, "max" + by + "(snatrace_audit_last_success_timestamp_seconds)"},
		// netlink failing alone is a working exporter reading /proc.
		{fFailing, `max by (instance, node, source) (snatrace_scrape_error{source!="netlink"} == 1)`},
	}
}

type key struct{ instance, node string }

func keyOf(m model.Metric) key {
	return key{string(m["instance"]), string(m["node"])}
}

// assemble builds the rows from the results of qs, in order: one row per
// exporter seen in the last hour.
func assemble(qs []query, res []model.Vector) []Node {
	rows := map[key]*Node{}
	for i, q := range qs {
		if q.f != fSeen {
			continue
		}
		for _, s := range res[i] {
			k := keyOf(s.Metric)
			name := k.node
			if name == "" {
				name = k.instance
			}
			rows[k] = &Node{Node: name, Instance: k.instance, RacingRules: map[string]int{}, Fill: -1, Failing: []string{}}
		}
	}
	for i, q := range qs {
		for _, s := range res[i] {
			if n := rows[keyOf(s.Metric)]; n != nil {
				set(n, q.f, s)
			}
		}
	}
	out := make([]Node, 0, len(rows))
	for _, n := range rows {
		if n.Max > 0 {
			n.Fill = n.Entries / n.Max
		}
		sort.Strings(n.Failing)
		out = append(out, *n)
	}
	return out
}

// set puts one sample into its field of n. A value that is not a finite
// number (Prometheus answers NaN for 0/0) is no value.
func set(n *Node, f field, s *model.Sample) {
	v := float64(s.Value)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	switch f {
	case fLive:
		n.Scraped = true
	case fRacing:
		if v > 0 {
			n.RacingRules[string(s.Metric["owner"])] += int(v)
			n.RacingTotal += int(v)
		}
	case fRules:
		n.Rules = int(v)
	case fRate:
		n.ClashesPerSecond = v
	case fClashes:
		n.Clashes = v
	case fEntries:
		n.Entries = v
	case fMax:
		n.Max = v
	case fAudit:
		n.LastAudit = time.UnixMilli(int64(v * 1000)).UTC()
	case fFailing:
		n.Failing = append(n.Failing, string(s.Metric["source"]))
	}
}
