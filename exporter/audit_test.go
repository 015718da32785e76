package exporter

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/ruleset"
)

// TestFromAuditReport audits a recorded iptables-save (Docker's plain
// MASQUERADE, kube-proxy's with --random-fully) and checks the labels served.
func TestFromAuditReport(t *testing.T) {
	b, err := os.ReadFile("testdata/audit.iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ruleset.Parse(string(b), "audit.iptables-save", ruleset.FormatIptablesSave)
	if err != nil {
		t.Fatal(err)
	}
	rep := audit.Run(audit.Input{Rules: rs, Kernel: "6.18.44-fc-v769"})
	res := FromAuditReport(rep)
	want := []AuditRule{
		{Owner: "docker", Backend: "iptables-nft", Randomness: RandomnessNone},
		{Owner: "kube-proxy", Backend: "iptables-nft", Randomness: RandomnessFullyRandom},
	}
	if len(res.Rules) != len(want) {
		t.Fatalf("rules %+v, want %+v", res.Rules, want)
	}
	for i := range want {
		if res.Rules[i] != want[i] {
			t.Errorf("rule %d: %+v, want %+v", i, res.Rules[i], want[i])
		}
	}
	if len(res.Findings) != len(rep.Findings) {
		t.Fatalf("%d findings, report has %d", len(res.Findings), len(rep.Findings))
	}
	found := false
	for i, f := range res.Findings {
		if f.Severity != rep.Findings[i].Severity.String() || f.Kind != string(rep.Findings[i].Kind) {
			t.Errorf("finding %d: %+v, report %+v", i, f, rep.Findings[i])
		}
		found = found || f.Kind == string(audit.KindNoFullyRandom)
	}
	if !found {
		t.Errorf("no %s finding for Docker's plain MASQUERADE: %+v", audit.KindNoFullyRandom, res.Findings)
	}

	// Served through the exporter.
	e := New(WithoutConntrack(), WithKernelRelease("6.18.44-fc-v769"),
		WithAudit(func(context.Context) (AuditResult, error) { return res, nil }, time.Minute))
	if err := e.RefreshAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	fams := scrapeFamilies(t, e)
	if v := gauge(t, fams, "snatrace_snat_rules", map[string]string{"owner": "docker", "backend": "iptables-nft", "randomness": "none"}); v != 1 {
		t.Errorf("docker rule gauge %v", v)
	}
	if v := gauge(t, fams, "snatrace_audit_findings", map[string]string{"kind": string(audit.KindNoFullyRandom)}); v < 1 {
		t.Errorf("no-fully-random findings %v", v)
	}
	// An audit that follows no changes (--no-watch) says so.
	if v := gauge(t, fams, "snatrace_audit_watching", nil); v != 0 {
		t.Errorf("snatrace_audit_watching %v without a watch, want 0", v)
	}
}

func TestFromAuditReportNil(t *testing.T) {
	if r := FromAuditReport(nil); len(r.Rules)+len(r.Findings) != 0 {
		t.Errorf("nil report gave %+v", r)
	}
}

// TestFromAuditReportUnreachable: a masquerade rule in a chain nothing
// jumps to is not served as a rule (it would fire the racing-rules alert
// for a rule no packet runs); its info finding is.
func TestFromAuditReportUnreachable(t *testing.T) {
	rs, err := ruleset.Parse("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:ORPHAN - [0:0]\n"+
		"-A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE --random-fully\n-A ORPHAN -s 10.2.0.0/16 -j MASQUERADE\nCOMMIT\n", "dump", ruleset.FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	res := FromAuditReport(audit.Run(audit.Input{Rules: rs, Kernel: "6.1.0"}))
	if len(res.Rules) != 1 || res.Rules[0].Randomness != RandomnessFullyRandom {
		t.Errorf("rules %+v, want only the fully-random one", res.Rules)
	}
	if len(res.Findings) != 1 || res.Findings[0].Kind != string(audit.KindUnreachable) {
		t.Errorf("findings %+v, want the one unreachable", res.Findings)
	}
}
