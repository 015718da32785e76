//go:build linux

package exporter

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
)

// reading is a scrape and the kernel's counters at the same moment.
type reading struct {
	exported map[string]float64 // "insert_failed/cpu" -> value
	kernel   ctstat.Snapshot
}

// stableReading scrapes, reads the kernel, scrapes again, until both scrapes
// agree (at most 20 tries): the counters only grow, so the kernel reading
// taken between two equal scrapes is the one they show.
func stableReading(t *testing.T, url string, n *NetNS) (reading, error) {
	for range 20 {
		a := exportedCounters(t, scrape(t, url))
		k, err := ctstat.ReadNetlink(n.FD())
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

// TestExporterLabSamePortBurst watches the node namespace of a lab run
// (plain masquerade, same-port bursts from 2 pods) with the exporter, scraped
// over HTTP after every round: each scrape equals the kernel's counters, and
// insert_failed_total rose by exactly the kernel's delta, at least the run's
// Until of SNAT clashes.
func TestExporterLabSamePortBurst(t *testing.T) {
	if err := lab.CheckPrivileges(); err != nil {
		t.Skip("needs root:", err)
	}
	masq, err := natrule.ParseMode("masquerade")
	if err != nil {
		t.Fatal(err)
	}
	const until = 10
	prefix := lab.NewPrefix()
	var (
		ns            *NetNS
		url           string
		first, last   *reading
		progressError error
	)
	cfg := lab.Config{
		Modes:       []natrule.Mode{masq},
		Pods:        2,
		Connections: 200000, // an upper bound: Until ends the run
		RoundSize:   60,     // small rounds: several scrapes during the run
		Until:       until,
		Prefix:      prefix,
		Progress: func(lab.Progress) {
			if progressError != nil {
				return
			}
			if ns == nil {
				if ns, progressError = OpenNetNS(prefix + "node"); progressError != nil {
					return
				}
				url = serve(t, New(ns.Option(), WithKernelRelease("test")), HandlerOpts{}, "")
			}
			r, err := stableReading(t, url, ns)
			if err != nil {
				progressError = err
				return
			}
			if first == nil {
				first = &r
			}
			last = &r
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := lab.Run(ctx, cfg)
	if ns != nil {
		defer ns.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if progressError != nil {
		t.Fatal(progressError)
	}
	if first == nil {
		t.Fatal("no round reported")
	}
	for _, r := range []*reading{first, last} {
		if got, want := r.exported, kernelCounters(r.kernel); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("scrape %v\nkernel %v", got, want)
		}
	}
	d := ctstat.Delta(first.kernel, last.kernel).Total()
	var exportedDelta float64
	for k, v := range last.exported {
		if len(k) > 14 && k[:14] == "insert_failed/" {
			exportedDelta += v - first.exported[k]
		}
	}
	if last == first {
		t.Logf("the run ended in its first round: only one reading")
	} else if d.InsertFailed == 0 {
		t.Errorf("insert_failed did not rise between the first and the last round")
	}
	if exportedDelta != float64(d.InsertFailed) {
		t.Errorf("exported insert_failed delta %v, kernel delta %d", exportedDelta, d.InsertFailed)
	}
	total := last.kernel.Total().InsertFailed
	if total < until || rep.Results[0].Conntrack.InsertFailed > total {
		t.Errorf("node insert_failed %d; lab counted %d, until %d", total, rep.Results[0].Conntrack.InsertFailed, until)
	}
	t.Logf("rounds: insert_failed %d -> %d (exported delta %v), lab verdict: %s",
		first.kernel.Total().InsertFailed, total, exportedDelta, rep.Verdict)
}
