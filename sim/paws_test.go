package sim

import (
	"context"
	"testing"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/tsoffset"
)

func shortRun(t *testing.T, nat string, ts tsoffset.Kind, rate float64, n int) Result {
	t.Helper()
	m, err := natrule.ParseMode(nat)
	if err != nil {
		t.Fatal(err)
	}
	era, _ := natmodel.ParseEra("6.18")
	res, err := Run(context.Background(), Config{Era: era, NAT: m, Workload: labnet.Short, Pods: 1, CPUs: 2,
		Rate: rate, Connections: n, TSOffsets: ts, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestShortPAWSModel: remapped short connections meet the server's
// TIME_WAIT; with per-port offsets some SYNs are rejected, with one offset
// per address pair (one pod, one server) never, and port preservation maps
// a pod's port onto itself, so plain masquerade never meets another port's
// TIME_WAIT.
func TestShortPAWSModel(t *testing.T) {
	full := shortRun(t, "masquerade fully-random", tsoffset.PerPort, 1000, 60000)
	if full.PAWSTimewait == 0 {
		t.Errorf("fully-random, per-port offsets, 1000/s for 60 s: no PAWS rejection")
	}
	if n := full.Delayed["1"] + full.Delayed["2"]; uint64(n) == 0 || full.SYNs-uint64(full.Connections) != full.PAWSTimewait+full.Clashes {
		t.Errorf("fully-random: %d SYNs for %d connections, %d PAWS + %d clashes: every rejected SYN must cost one retransmission", full.SYNs, full.Connections, full.PAWSTimewait, full.Clashes)
	}
	if r := shortRun(t, "masquerade fully-random", tsoffset.PerAddress, 1000, 60000); r.PAWSTimewait != 0 {
		t.Errorf("fully-random, per-address offsets: %d PAWS rejections from one pod, want 0", r.PAWSTimewait)
	}
	if r := shortRun(t, "masquerade", tsoffset.PerPort, 1000, 60000); r.PAWSTimewait != 0 {
		t.Errorf("plain masquerade, one pod: %d PAWS rejections, want 0", r.PAWSTimewait)
	}
	lo, hi := shortRun(t, "masquerade fully-random", tsoffset.PerPort, 250, 25000), shortRun(t, "masquerade fully-random", tsoffset.PerPort, 700, 70000)
	if lo.pawsRate() >= hi.pawsRate() {
		t.Errorf("PAWS share at 250/s %.3g%% not below 700/s %.3g%%", 100*lo.pawsRate(), 100*hi.pawsRate())
	}
}

func TestRetryAt(t *testing.T) {
	s := int64(time.Second)
	for _, tc := range []struct {
		retrans int
		quick   bool
		want    int64
	}{
		{1, false, s}, {2, false, 3 * s}, // the RTO schedule: 1 s, 3 s, 7 s
		{1, true, 10*s + quickRetry},                             // first rejection: 2 ms from now
		{2, true, quickRetry + 2*s}, {3, true, quickRetry + 6*s}, // then the doubled RTO
	} {
		if got := retryAt(0, 10*s, tc.retrans, tc.quick, time.Second, 0); got != tc.want {
			t.Errorf("retryAt(retrans %d, quick %v) = %v, want %v", tc.retrans, tc.quick, time.Duration(got), time.Duration(tc.want))
		}
	}
}
