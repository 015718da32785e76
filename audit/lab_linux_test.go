//go:build linux

package audit_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/audit"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
)

// TestAuditLabNodeDuringBurst audits a lab node while a same-port burst
// races SYNs through its plain masquerade: the rule must be flagged, and the
// race-happening finding must report exactly the insert failures the lab's
// own accounting counted in that interval, as a rate over it.
func TestAuditLabNodeDuringBurst(t *testing.T) {
	ctx := context.Background()
	s, _ := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)

	// The audit's counter interval is exactly the burst: its sleeper runs
	// the lab round and returns when the round has been accounted.
	// The test clocks the burst itself: the audit's interval lies between
	// the burst (inner) and the whole ReadConntrack call (outer).
	var round *lab.Result
	var inner time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		var err error
		start := time.Now()
		round, err = s.Round(ctx, 400000, 20)
		inner = time.Since(start)
		return err
	}
	start := time.Now()
	ct, err := audit.ReadConntrack(ctx, s.Node(), 100*time.Millisecond, sleep)
	outer := time.Since(start)
	// The audit reports its interval to the millisecond: widen the test's
	// clocks by the rounding.
	inner -= time.Millisecond / 2
	outer += time.Millisecond / 2
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ruleset.Read(ctx, ruleset.ReadOptions{NS: s.Node()})
	if err != nil {
		t.Fatal(err)
	}
	ruleset.Attribute(rs)
	rep := audit.Run(audit.Input{Rules: rs, Conntrack: ct, Kernel: "6.18.0"})

	if round.Conntrack.InsertFailed < 20 {
		t.Fatalf("the burst made only %d clashes", round.Conntrack.InsertFailed)
	}
	if len(rep.Rules) != 1 || rep.Rules[0].Chain != natrule.ChainName || rep.Rules[0].Table != natrule.TableName {
		t.Fatalf("rules = %+v, want the lab's one rule in %s/%s", rep.Rules, natrule.TableName, natrule.ChainName)
	}
	kinds := map[audit.Kind]audit.Finding{}
	for _, f := range rep.Findings {
		kinds[f.Kind] = f
	}
	if _, ok := kinds[audit.KindNoFullyRandom]; !ok {
		t.Errorf("plain masquerade not flagged: %+v", rep.Findings)
	}
	race, ok := kinds[audit.KindRaceNow]
	if !ok {
		t.Fatalf("no %s finding: %+v", audit.KindRaceNow, rep.Findings)
	}
	v := rep.Conntrack
	if v.Delta == nil || v.Delta.InsertFailed != round.Conntrack.InsertFailed || v.Delta.Drop != round.Conntrack.Drop {
		t.Fatalf("audit delta %+v, lab counted insert_failed %d drop %d", v.Delta, round.Conntrack.InsertFailed, round.Conntrack.Drop)
	}
	if v.IntervalSeconds < inner.Seconds() || v.IntervalSeconds > outer.Seconds() {
		t.Errorf("audit interval %.3f s; the burst took %.3f s and the whole read %.3f s", v.IntervalSeconds, inner.Seconds(), outer.Seconds())
	}
	n := float64(round.Conntrack.InsertFailed)
	if r := v.Rates.InsertFailed; r < n/outer.Seconds() || r > n/inner.Seconds() {
		t.Errorf("insert_failed rate %.3f/s; %d failures over %.3f–%.3f s is %.3f–%.3f/s",
			r, round.Conntrack.InsertFailed, inner.Seconds(), outer.Seconds(), n/outer.Seconds(), n/inner.Seconds())
	}
	if !strings.Contains(race.Message+strings.Join(race.Evidence, " "), fmt.Sprint(round.Conntrack.InsertFailed)) {
		t.Errorf("finding does not show the %d insert failures: %q %q", round.Conntrack.InsertFailed, race.Message, race.Evidence)
	}
	var perCPU uint64
	for _, c := range v.CPUs {
		perCPU += c.InsertFailed
	}
	if perCPU != round.Conntrack.InsertFailed {
		t.Errorf("per-CPU insert_failed sum %d, want %d", perCPU, round.Conntrack.InsertFailed)
	}
}
