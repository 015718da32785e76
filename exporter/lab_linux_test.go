//go:build linux

package exporter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
)

// reading is a scrape and the kernel's counters at the same moment.
type reading struct {
	exported map[string]float64 // "insert_failed/cpu" -> value
	kernel   ctstat.Snapshot
}

// stableReading scrapes, reads the kernel, scrapes again, until both scrapes
// agree (at most 20 tries): the counters only grow, so the kernel reading
// taken between two equal scrapes is the one they show.
func stableReading(t *testing.T, url string, n *netns.NS) (reading, error) {
	for range 20 {
		a := exportedCounters(t, scrape(t, url))
		k, err := ctstat.ReadNetlink(n)
		if err != nil {
			return reading{}, err
		}
		b := exportedCounters(t, scrape(t, url))
		if fmt.Sprint(a) == fmt.Sprint(b) {
			return reading{exported: a, kernel: k}, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return reading{}, fmt.Errorf("counters kept moving over 20 scrapes")
}

func exportedCounters(t *testing.T, body string) map[string]float64 {
	fams := parseExposition(t, []byte(body))
	out := map[string]float64{}
	for _, cc := range cpuCounters {
		f := fams["snatrace_conntrack_"+cc.name+"_total"]
		for _, m := range f.GetMetric() {
			out[cc.name+"/"+label(m, "cpu")] = m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func kernelCounters(s ctstat.Snapshot) map[string]float64 {
	out := map[string]float64{}
	for _, c := range s.CPUs {
		for _, cc := range cpuCounters {
			out[fmt.Sprintf("%s/%d", cc.name, c.CPU)] = float64(cc.get(c.Counters))
		}
	}
	return out
}

// TestExporterLabSamePortBurst puts the exporter on the node namespace of a
// lab session, scrapes it over HTTP, runs same-port bursts from 2 pods under
// plain masquerade until the node counts 10 SNAT clashes, and scrapes again:
// each scrape equals the kernel's per-CPU counters, and insert_failed_total
// rose by exactly the kernel's delta, which is the lab's own count.
func TestExporterLabSamePortBurst(t *testing.T) {
	if err := lab.CheckPrivileges(); err != nil {
		t.Skip("needs root:", err)
	}
	masq, err := natrule.ParseMode("masquerade")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := lab.Open(ctx, lab.Config{
		Modes:       []natrule.Mode{masq},
		Backends:    []natrule.Backend{natrule.Nftables},
		Pods:        2,
		Connections: 200000, // an upper bound: until ends the round
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	ns := s.Node()
	url := serve(t, New(ConntrackOf(ns), WithKernelRelease("test")), HandlerOpts{}, "")
	if err := s.Install(ctx, masq, natrule.Nftables); err != nil {
		t.Fatal(err)
	}

	// The audit of the node sees the rule the lab installed.
	ar, err := LiveAudit(ns)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ar.Rules) == 0 {
		t.Errorf("audit of the lab node found no rule")
	}
	for _, r := range ar.Rules {
		if r.Backend != "nftables" || r.Randomness != RandomnessNone {
			t.Errorf("audit rule %+v, want nftables masquerade without randomness", r)
		}
	}

	before, err := stableReading(t, url, ns)
	if err != nil {
		t.Fatal(err)
	}
	const until = 10
	res, err := s.Round(ctx, 200000, until)
	if err != nil {
		t.Fatal(err)
	}
	after, err := stableReading(t, url, ns)
	if err != nil {
		t.Fatal(err)
	}

	for _, r := range []reading{before, after} {
		if got, want := r.exported, kernelCounters(r.kernel); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("scrape %v\nkernel %v", got, want)
		}
	}
	d := ctstat.Delta(before.kernel, after.kernel).Total()
	var exportedDelta float64
	for k, v := range after.exported {
		if strings.HasPrefix(k, "insert_failed/") {
			exportedDelta += v - before.exported[k]
		}
	}
	if exportedDelta != float64(d.InsertFailed) || d.InsertFailed != res.Conntrack.InsertFailed {
		t.Errorf("insert_failed delta: exported %v, kernel %d, lab %d", exportedDelta, d.InsertFailed, res.Conntrack.InsertFailed)
	}
	if d.InsertFailed < until {
		t.Errorf("insert_failed rose by %d, want >= %d", d.InsertFailed, until)
	}
	t.Logf("%d connections: insert_failed %d -> %d (exported delta %v, drop delta %d)",
		res.Connections, before.kernel.Total().InsertFailed, after.kernel.Total().InsertFailed, exportedDelta, d.Drop)
}
