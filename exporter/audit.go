package exporter

import (
	"fmt"

	"github.com/snatrace/snatrace/audit"
)

// FromAuditReport reduces an audit report to the labels the exporter serves:
// per rule no NAT hook leaves unreached, its owner, backend and randomness (RandomnessUnknown when the
// source did not show the NAT flags), per finding its severity and kind.
func FromAuditReport(rep *audit.Report) AuditResult {
	var r AuditResult
	if rep == nil {
		return r
	}
	for _, v := range rep.Rules {
		if v.Unreachable {
			continue // no packet runs it: not a rule that can race
		}
		rnd := RandomnessNone
		switch {
		case !v.FlagsKnown:
			rnd = RandomnessUnknown
		case v.FullyRandom:
			rnd = RandomnessFullyRandom
		case v.Random:
			rnd = RandomnessRandom
		}
		r.Rules = append(r.Rules, AuditRule{Owner: string(v.Owner), Backend: string(v.Backend), Randomness: rnd})
	}
	for _, f := range rep.Findings {
		r.Findings = append(r.Findings, AuditFinding{Severity: f.Severity.String(), Kind: string(f.Kind)})
	}
	for _, e := range rep.ReadErrors {
		if r.ReadErrors == nil {
			r.ReadErrors = map[string]error{}
		}
		r.ReadErrors[RuleSource(string(e.Backend))] = fmt.Errorf("%s: %s", e.Source, e.Err)
	}
	return r
}
