//go:build linux

package exporter

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/tool"
)

// TestAuditFollowsChanges runs the exporter's refresh loop with a safety
// net of an hour: it re-audits when the SNAT rules change (an nftables
// commit to the chain of the masquerade, its table made dormant and awake
// again, an iptables-legacy write), not
// when kube-proxy-like churn rewrites a chain no source-NAT hook reaches,
// and the metrics show the new rules within a second.
func TestAuditFollowsChanges(t *testing.T) {
	ns := netnstest.New(t, "exwatch")
	netnstest.Run(t, ns, `table ip agent {
	chain post {
		type nat hook postrouting priority srcnat;
		ip saddr 10.244.0.0/16 masquerade
	}
	chain services {
		ip daddr 10.96.0.1 counter
	}
}
`, "nft", "-f", "-")
	a := NewLiveAuditor(ns, filepath.Join(t.TempDir(), "xtables.lock"))
	e := New(WithoutConntrack(), WithAudit(a.Audit, time.Hour), WithAuditWatch(a.Watch, 50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, e, "the first audit", func(m metrics) bool { return m.refreshes["start"] == 1 && m.watching == 1 })
	for i := 0; i < 5; i++ { // churn elsewhere
		netnstest.Run(t, ns, "flush chain ip agent services\nadd rule ip agent services ip daddr 10.96.0.2 counter\n", "nft", "-f", "-")
	}
	time.Sleep(300 * time.Millisecond)
	if m := gather(t, e); m.refreshes["nftables"] != 0 {
		t.Errorf("%v refreshes after commits to a chain no source NAT runs in, want 0", m.refreshes["nftables"])
	}
	netnstest.Run(t, ns, "flush chain ip agent post\nadd rule ip agent post ip saddr 10.244.0.0/16 masquerade fully-random\n", "nft", "-f", "-")
	waitFor(t, e, "the fully-random rule", func(m metrics) bool {
		return m.refreshes["nftables"] >= 1 && m.rules["fully-random"] == 1 && m.rules["none"] == 0
	})
	// A dormant table runs none of its chains: its rule goes, and comes
	// back when the table wakes up.
	netnstest.Run(t, ns, "", "nft", "add", "table", "ip", "agent", "{ flags dormant; }")
	waitFor(t, e, "the dormant table", func(m metrics) bool { return m.rules["fully-random"] == 0 })
	netnstest.Run(t, ns, "", "nft", "add", "table", "ip", "agent") // nft sends flags 0
	waitFor(t, e, "the table awake", func(m metrics) bool { return m.rules["fully-random"] == 1 })
	// iptables-legacy sends no events; its writers take the xtables lock.
	legacy(t, ctx, ns, a.lockPath, "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.245.0.0/16", "-j", "MASQUERADE")
	waitFor(t, e, "the legacy rule", func(m metrics) bool {
		return m.refreshes["xtables-lock"] >= 1 && m.rules["none"] == 1
	})
	before := gather(t, e).refreshes["xtables-lock"]
	// A rule replaced in place keeps the table's size; it still shows.
	legacy(t, ctx, ns, a.lockPath, "-w", "-t", "nat", "-R", "POSTROUTING", "1", "-s", "10.245.0.0/16", "-j", "MASQUERADE", "--random-fully")
	waitFor(t, e, "the legacy rule made fully-random", func(m metrics) bool {
		return m.refreshes["xtables-lock"] > before && m.rules["none"] == 0 && m.rules["fully-random"] == 2
	})
}

// legacy runs iptables-legacy in ns with the test's xtables lock.
func legacy(t *testing.T, ctx context.Context, ns *netns.NS, lock string, args ...string) {
	t.Helper()
	cmd := tool.Command("iptables-legacy", args...)
	cmd.Env = []string{"XTABLES_LOCKFILE=" + lock}
	if _, err := (tool.Exec{NS: ns}).Run(ctx, cmd); err != nil {
		t.Fatal(err)
	}
}

type metrics struct {
	refreshes map[string]float64
	rules     map[string]float64 // by randomness
	watching  float64
}

func gather(t *testing.T, e *Exporter) metrics {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := metrics{refreshes: map[string]float64{}, rules: map[string]float64{}}
	label := func(x *dto.Metric, name string) string {
		for _, l := range x.Label {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for _, f := range fams {
		for _, x := range f.Metric {
			switch f.GetName() {
			case "snatrace_audit_refreshes_total":
				m.refreshes[label(x, "trigger")] = x.GetCounter().GetValue()
			case "snatrace_snat_rules":
				m.rules[label(x, "randomness")] += x.GetGauge().GetValue()
			case "snatrace_audit_watching":
				m.watching = x.GetGauge().GetValue()
			}
		}
	}
	return m
}

// waitFor polls the metrics until ok, failing after 3 s.
func waitFor(t *testing.T, e *Exporter, what string, ok func(metrics) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		m := gather(t, e)
		if ok(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: metrics %+v", what, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
