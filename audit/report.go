package audit

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/snatrace/snatrace/report/text"
	"github.com/snatrace/snatrace/ruleset"
)

// WriteText writes the human report: the summary line first, host-wide
// findings, then the rules grouped by owner (worst owner first) with their
// findings and the owner's remedy, then the counters.
func WriteText(w io.Writer, rep *Report) error {
	ew := &text.Writer{W: w}
	writeHeader(ew, rep)
	byRule := map[int][]Finding{}
	worst := map[ruleset.Owner]Severity{}
	var hostFs []Finding
	for _, f := range rep.Findings {
		if f.RuleIndex < 0 {
			hostFs = append(hostFs, f)
			continue
		}
		byRule[f.RuleIndex] = append(byRule[f.RuleIndex], f)
		if s, ok := worst[f.Owner]; !ok || f.Severity > s {
			worst[f.Owner] = f.Severity
		}
	}
	if len(hostFs) > 0 {
		ew.Printf("\nhost\n")
		for _, f := range hostFs {
			writeFinding(ew, f, "  ")
			if f.Remedy != "" {
				ew.Printf("      remedy: %s\n", f.Remedy)
			}
		}
	}
	owners := append([]ruleset.Owner(nil), rep.Owners...)
	sort.SliceStable(owners, func(a, b int) bool {
		sa, oka := worst[owners[a]]
		sb, okb := worst[owners[b]]
		if oka != okb {
			return oka
		}
		return sa > sb
	})
	for _, o := range owners {
		writeOwner(ew, rep, o, byRule)
	}
	writeConntrack(ew, rep.Conntrack)
	if len(rep.Warnings) > 0 {
		ew.Printf("\nwarnings\n")
		for _, wn := range rep.Warnings {
			ew.Printf("  %s\n", wn)
		}
	}
	return ew.Err
}

// writeHeader writes the summary and what was read.
func writeHeader(ew *text.Writer, rep *Report) {
	ew.Printf("snatrace audit: %s\n", rep.Summary)
	var read []string
	for _, s := range rep.Sources {
		read = append(read, fmt.Sprintf("%s from %s (%d)", s.Backend, s.Where, s.Rules))
	}
	facts := []string{}
	if rep.Kernel != "" {
		facts = append(facts, "kernel "+rep.Kernel)
	}
	if rep.Iptables != "" {
		facts = append(facts, "iptables "+rep.Iptables)
	}
	if len(read) > 0 {
		facts = append(facts, "read "+strings.Join(read, ", "))
	}
	if len(facts) > 0 {
		ew.Printf("%s\n", strings.Join(facts, "; "))
	}
}

// writeOwner writes the rules of one owner with their findings, the
// owner's evidence and its remedy.
func writeOwner(ew *text.Writer, rep *Report, o ruleset.Owner, byRule map[int][]Finding) {
	var idx []int
	for i, r := range rep.Rules {
		if r.Owner == o {
			idx = append(idx, i)
		}
	}
	ew.Printf("\n%s (%d %s)\n", o, len(idx), text.Plural(len(idx), "rule", "rules"))
	remedy := ""
	for _, i := range idx {
		r := rep.Rules[i]
		where := fmt.Sprintf("%s %s %s/%s #%d", r.Backend, r.Family, r.Table, r.Chain, r.Position)
		if r.Handle != 0 {
			where += fmt.Sprintf(" handle %d", r.Handle)
		}
		if r.Line != 0 {
			where += fmt.Sprintf(" line %d", r.Line)
		}
		status := "ok"
		if fs := byRule[i]; len(fs) > 0 {
			status = fs[0].Severity.String()
		}
		ew.Printf("  %-8s %s  %s\n           %s\n", status, where, r.Mode, r.Rule)
		for _, f := range byRule[i] {
			writeFinding(ew, f, "           ")
			if f.Remedy != "" && f.Kind != KindNoFullyRandom && f.Kind != KindRandomOnly {
				ew.Printf("               remedy: %s\n", f.Remedy)
			} else if f.Remedy != "" {
				remedy = f.Remedy
			}
		}
	}
	if o != ruleset.Unknown || remedy != "" {
		for _, i := range idx {
			if rep.Rules[i].OwnerEvidence != "" {
				ew.Printf("  owner evidence: %s\n", rep.Rules[i].OwnerEvidence)
				break
			}
		}
	}
	if remedy != "" {
		ew.Printf("  remedy: %s\n", remedy)
	}
}

// writeConntrack writes the counters, per CPU over the interval.
func writeConntrack(ew *text.Writer, c *ConntrackView) {
	if c == nil {
		return
	}
	ew.Printf("\nconntrack (%s", c.Source)
	if c.IntervalSeconds > 0 {
		ew.Printf(", over %gs", c.IntervalSeconds)
	}
	ew.Printf("): entries %d", c.Entries)
	if c.Max > 0 {
		ew.Printf(" of %d (%.1f%%)", c.Max, 100*c.Fill)
	}
	if c.Delta == nil {
		ew.Printf("; since start: insert_failed %d, drop %d, early_drop %d, clash_resolve %d, chaintoolong %d\n",
			c.Total.InsertFailed, c.Total.Drop, c.Total.EarlyDrop, c.Total.ClashResolve, c.Total.ChainTooLong)
		return
	}
	ew.Printf("; insert_failed +%d (%.1f/s), drop +%d (%.1f/s), early_drop +%d, clash_resolve +%d, chaintoolong +%d\n",
		c.Delta.InsertFailed, c.Rates.InsertFailed, c.Delta.Drop, c.Rates.Drop, c.Delta.EarlyDrop, c.Delta.ClashResolve, c.Delta.ChainTooLong)
	for _, cpu := range c.CPUs {
		ew.Printf("  cpu%-3d insert_failed +%d (%.1f/s) drop +%d (%.1f/s)\n", cpu.CPU, cpu.InsertFailed, cpu.InsertFailedRate, cpu.Drop, cpu.DropRate)
	}
}

func writeFinding(ew *text.Writer, f Finding, indent string) {
	ew.Printf("%s[%s] %s: %s\n", indent, f.Severity, f.Kind, f.Message)
	for _, e := range f.Evidence {
		ew.Printf("%s    evidence: %s\n", indent, e)
	}
}
