package audit

import (
	"fmt"

	"github.com/snatrace/snatrace/ctstat"
)

// CounterView is a set of conntrack counters as the JSON report shows them.
type CounterView struct {
	Found         uint64 `json:"found"`
	Invalid       uint64 `json:"invalid"`
	InsertFailed  uint64 `json:"insert_failed"`
	Drop          uint64 `json:"drop"`
	EarlyDrop     uint64 `json:"early_drop"`
	Error         uint64 `json:"error"`
	SearchRestart uint64 `json:"search_restart"`
	ClashResolve  uint64 `json:"clash_resolve"`
	ChainTooLong  uint64 `json:"chaintoolong"`
}

func counterView(c ctstat.Counters) CounterView {
	return CounterView{Found: c.Found, Invalid: c.Invalid, InsertFailed: c.InsertFailed, Drop: c.Drop,
		EarlyDrop: c.EarlyDrop, Error: c.Error, SearchRestart: c.SearchRestart, ClashResolve: c.ClashResolve, ChainTooLong: c.ChainTooLong}
}

// RateView holds per-second rates over the interval.
type RateView struct {
	InsertFailed float64 `json:"insert_failed_per_s"`
	Drop         float64 `json:"drop_per_s"`
	EarlyDrop    float64 `json:"early_drop_per_s"`
	ClashResolve float64 `json:"clash_resolve_per_s"`
	ChainTooLong float64 `json:"chaintoolong_per_s"`
}

// CPUView is one CPU's share of the interval.
type CPUView struct {
	CPU              int     `json:"cpu"`
	InsertFailed     uint64  `json:"insert_failed"`
	Drop             uint64  `json:"drop"`
	InsertFailedRate float64 `json:"insert_failed_per_s"`
	DropRate         float64 `json:"drop_per_s"`
}

// ConntrackView is the conntrack part of the report.
type ConntrackView struct {
	Source          string       `json:"source"`
	IntervalSeconds float64      `json:"interval_seconds"`
	Entries         uint64       `json:"entries"`
	Max             uint64       `json:"max,omitempty"`
	Fill            float64      `json:"fill,omitempty"`
	Total           CounterView  `json:"total"`
	Delta           *CounterView `json:"delta,omitempty"`
	Rates           RateView     `json:"rates"`
	CPUs            []CPUView    `json:"cpus,omitempty"`
}

// Thresholds for the table fill findings.
const (
	fullFill    = 0.95
	fillingFill = 0.80
)

// conntrackFindings reads the counters: is the race happening now (rising
// insert_failed / drop), or is the table full (early_drop, entries near max)?
// racy is the number of rules that can race.
func conntrackFindings(c *Conntrack, racy int) (*ConntrackView, []Finding) {
	v := &ConntrackView{
		Source: c.Now.Source, IntervalSeconds: c.Interval.Seconds(), Entries: c.Now.Entries, Max: c.Max,
		Total: counterView(c.Now.Total()),
	}
	if c.Max > 0 {
		v.Fill = float64(c.Now.Entries) / float64(c.Max)
	}
	var out []Finding
	host := func(sev Severity, kind Kind, msg, remedy string, ev ...string) {
		out = append(out, Finding{Severity: sev, Kind: kind, RuleIndex: -1, Message: msg, Evidence: ev, Remedy: remedy})
	}
	fillEv := fmt.Sprintf("entries %d of nf_conntrack_max %d (%.0f%%)", c.Now.Entries, c.Max, 100*v.Fill)
	secs := c.Interval.Seconds()
	if secs > 0 {
		d := c.Delta.Total()
		dv := counterView(d)
		v.Delta = &dv
		v.Rates = RateView{
			InsertFailed: float64(d.InsertFailed) / secs, Drop: float64(d.Drop) / secs,
			EarlyDrop: float64(d.EarlyDrop) / secs, ClashResolve: float64(d.ClashResolve) / secs,
			ChainTooLong: float64(d.ChainTooLong) / secs,
		}
		var perCPU []string
		for _, cpu := range c.Delta.CPUs {
			v.CPUs = append(v.CPUs, CPUView{CPU: cpu.CPU, InsertFailed: cpu.InsertFailed, Drop: cpu.Drop,
				InsertFailedRate: float64(cpu.InsertFailed) / secs, DropRate: float64(cpu.Drop) / secs})
			if cpu.InsertFailed > 0 || cpu.Drop > 0 {
				perCPU = append(perCPU, fmt.Sprintf("cpu%d insert_failed %.1f/s drop %.1f/s", cpu.CPU, float64(cpu.InsertFailed)/secs, float64(cpu.Drop)/secs))
			}
		}
		tableFull := d.EarlyDrop > 0 || (c.Max > 0 && v.Fill >= fullFill)
		window := fmt.Sprintf("over %gs", secs)
		if d.InsertFailed > 0 || (d.Drop > 0 && !tableFull) {
			sev, msg := High, "conntrack insert_failed/drop are rising although every rule is fully-random: residual clashes (narrow port ranges, one destination under heavy fan-in)"
			if racy > 0 {
				sev = Critical
				msg = fmt.Sprintf("the SNAT race is happening now: %d SYNs failed conntrack confirm (insert_failed %.1f/s, drop %.1f/s %s) and %d rules can race", d.InsertFailed, v.Rates.InsertFailed, v.Rates.Drop, window, racy)
			}
			ev := append([]string{fmt.Sprintf("insert_failed +%d, drop +%d %s", d.InsertFailed, d.Drop, window)}, perCPU...)
			host(sev, KindRaceNow, msg, "make the racing rules fully-random: the rule findings give each owner's setting, or `snatrace fix --apply` now", ev...)
		}
		if tableFull {
			host(High, KindTableFull, fmt.Sprintf("the conntrack table is full: early_drop +%d %s, %s; new flows are dropped for lack of room, not by the SNAT race", d.EarlyDrop, window, fillEv),
				"raise net.netfilter.nf_conntrack_max (and the hash size, nf_conntrack_buckets), or shorten conntrack timeouts", fillEv)
		} else if c.Max > 0 && v.Fill >= fillingFill {
			host(Medium, KindTableFull, fmt.Sprintf("the conntrack table is %.0f%% full (%s): near the point where new flows are dropped", 100*v.Fill, fillEv),
				"raise net.netfilter.nf_conntrack_max before it fills", fillEv)
		}
		if d.ChainTooLong > 0 {
			host(Medium, KindChainTooLong, fmt.Sprintf("chaintoolong +%d %s: conntrack hash chains are too long, lookups slow down and entries are evicted", d.ChainTooLong, window),
				"raise the conntrack hash size (nf_conntrack_buckets / hashsize module parameter)", fmt.Sprintf("chaintoolong +%d", d.ChainTooLong))
		}
		if d.ClashResolve > 0 {
			host(Info, KindClashResolve, fmt.Sprintf("clash_resolve +%d %s: UDP clashes (typically DNS) were resolved without loss; this shows the concurrency that makes TCP SYNs race", d.ClashResolve, window), "",
				fmt.Sprintf("clash_resolve +%d", d.ClashResolve))
		}
		return v, out
	}
	t := c.Now.Total()
	if t.InsertFailed > 0 {
		host(Medium, KindRacePast, fmt.Sprintf("insert_failed is %d since the namespace started (drop %d): the race has happened; measure with --interval to see whether it is happening now", t.InsertFailed, t.Drop),
			"run `snatrace audit --interval 10s` while traffic flows", fmt.Sprintf("insert_failed %d, drop %d (cumulative)", t.InsertFailed, t.Drop))
	}
	if c.Max > 0 && v.Fill >= fillingFill {
		sev := Medium
		if v.Fill >= fullFill {
			sev = High
		}
		host(sev, KindTableFull, fmt.Sprintf("the conntrack table is %.0f%% full (%s)", 100*v.Fill, fillEv),
			"raise net.netfilter.nf_conntrack_max (and nf_conntrack_buckets)", fillEv)
	}
	return v, out
}
