//go:build linux

package deploy

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/podmantest"
	"github.com/snatrace/snatrace/internal/promtest"
	"github.com/snatrace/snatrace/lab"
)

// testFor is every alert's for: in the tests; the rules file keeps the real
// ones (5m, 1h, 15m).
const testFor = "3s"

// xtablesLock is the lock of every iptables-legacy writer on a host.
const xtablesLock = "/run/xtables.lock"

// shortRules is prometheus/snatrace.rules.yml with every for: set to
// testFor and nothing else changed.
func shortRules(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("prometheus/snatrace.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(\s+)for: \S+$`)
	alerts := len(regexp.MustCompile(`(?m)^\s+- alert: `).FindAll(b, -1))
	if n := len(re.FindAll(b, -1)); n != alerts || n == 0 {
		t.Fatalf("%d for: lines in the rules file, want one per alert (%d)", n, alerts)
	}
	return re.ReplaceAllString(string(b), "${1}for: "+testFor)
}

// alertState returns the state ("pending", "firing") of alert name for
// node, or "" when it is not active, and the alert's labels.
func alertState(t testing.TB, prom *promtest.Prometheus, name, node string) (v1.AlertState, model.LabelSet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := prom.API.Alerts(ctx)
	if err != nil {
		t.Fatalf("prometheus alerts: %v", err)
	}
	for _, a := range res.Alerts {
		if string(a.Labels["alertname"]) == name && string(a.Labels["node"]) == node {
			return a.State, a.Labels
		}
	}
	return "", nil
}

// waitAlert polls the alerts every 100 ms until alert name is in state
// want ("" for resolved) for node, for at most limit; it returns the states
// seen on the way, in order, and when want was reached.
func waitAlert(t *testing.T, prom *promtest.Prometheus, name, node string, want v1.AlertState, limit time.Duration) ([]v1.AlertState, time.Time) {
	t.Helper()
	var seen []v1.AlertState
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		st, _ := alertState(t, prom, name, node)
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if st == want {
			return seen, time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s on %s: not %q within %v (states seen %q); prometheus log:\n%s", name, node, want, limit, seen, prom.Log())
	return nil, time.Time{}
}

// query runs an instant query and returns its result.
func query(t testing.TB, prom *promtest.Prometheus, q string) model.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, _, err := prom.API.Query(ctx, q, time.Now())
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	return v
}

// alerts: a real Prometheus with the shipped rules (short for:) scrapes the
// exporter container. The racing-rules alert fires for the plain masquerade;
// a same-port burst takes the clash alert through pending to firing,
// labelled with the node; the table-fill alert stays inactive; every
// dashboard query returns data; snatrace fix --apply, run from the image,
// resolves both alerts.
func alerts(t *testing.T, p *podmantest.Podman, ref string, ps podSpec, s *lab.Session, target string) {
	node := "lab-" + s.Node().Name()
	prom := promtest.Start(t, s.Node(), promtest.Config{Targets: []promtest.Target{{Addr: target, Node: node}}, Rules: shortRules(t)})
	waitAlert(t, prom, "SnatraceRacingRules", node, v1.AlertStateFiring, 30*time.Second)
	if st, _ := alertState(t, prom, "SnatraceSNATClashes", node); st != "" {
		t.Fatalf("clash alert %q before any clash", st)
	}

	start := time.Now()
	r, err := s.Round(context.Background(), 200000, 10)
	if err != nil {
		t.Fatal(err)
	}
	seen, fired := waitAlert(t, prom, "SnatraceSNATClashes", node, v1.AlertStateFiring, 30*time.Second)
	// It was inactive before the burst (checked above); the burst itself
	// lasts about a second, so the first poll may see it pending already.
	if len(seen) < 2 || seen[len(seen)-2] != v1.AlertStatePending || len(seen) == 3 && seen[0] != "" || len(seen) > 3 {
		t.Errorf("clash alert went through %q after the burst, want pending, then firing", seen)
	}
	if _, l := alertState(t, prom, "SnatraceSNATClashes", node); l["severity"] != "warning" || l["instance"] != model.LabelValue(target) {
		t.Errorf("clash alert labels %v", l)
	}
	t.Logf("%d SNAT clashes in %d connections; clash alert firing %v after the burst started (for: %s, 1 s scrapes and evaluations)",
		r.Conntrack.InsertFailed, r.Connections, fired.Sub(start).Round(10*time.Millisecond), testFor)

	kernel, err := ctstat.ReadNetlink(s.Node())
	if err != nil {
		t.Fatal(err)
	}
	v, ok := query(t, prom, `sum(snatrace_conntrack_insert_failed_total{node="`+node+`"})`).(model.Vector)
	if !ok || len(v) != 1 || v[0].Value != model.SampleValue(kernel.Total().InsertFailed) {
		t.Errorf("Prometheus has insert_failed %v, the kernel %d", v, kernel.Total().InsertFailed)
	}
	if st, _ := alertState(t, prom, "SnatraceConntrackTableFull", node); st != "" {
		t.Errorf("table-fill alert %q on a node far from nf_conntrack_max", st)
	}
	dashboardQueries(t, prom, node)

	// fix writes iptables-legacy rules: like kube-proxy it needs the host's
	// xtables lock, shared with every other iptables writer of the node, and
	// a writable /run for its own.
	lock, err := os.OpenFile(xtablesLock, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	lock.Close()
	run := append(append(append([]string{"run", "--rm"}, ps.runArgs(t, podIP)...), "--tmpfs=/run", "--volume="+xtablesLock+":"+xtablesLock), ref)
	out := p.Run(t, append(run, "fix", "--apply", "--no-backup")...)
	t.Logf("snatrace fix --apply in the container:\n%s", out)
	waitAlert(t, prom, "SnatraceRacingRules", node, "", 30*time.Second)
	waitAlert(t, prom, "SnatraceSNATClashes", node, "", 30*time.Second)
}

// dashboardQueries runs every query of the Grafana dashboard for node, as
// Grafana would, and fails for each that returns no data.
func dashboardQueries(t *testing.T, prom *promtest.Prometheus, node string) {
	t.Helper()
	vars := strings.NewReplacer("$node", regexp.QuoteMeta(node), "$__rate_interval", "1m", "$__range", "5m")
	n := 0
	for _, panel := range loadDashboard(t).Panels {
		for _, tg := range panel.Targets {
			n++
			q := vars.Replace(tg.Expr)
			switch v := query(t, prom, q).(type) {
			case model.Vector:
				if len(v) == 0 {
					t.Errorf("dashboard panel %q: %s returns no data", panel.Title, q)
				}
			case *model.Scalar:
			default:
				t.Errorf("dashboard panel %q: %s returns %T", panel.Title, q, v)
			}
		}
	}
	t.Logf("%d dashboard queries, each with data", n)
}
