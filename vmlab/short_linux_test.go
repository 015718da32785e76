//go:build linux

package vmlab

import (
	"context"
	"testing"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/tsoffset"
)

// TestShortOnStockKernel is issue 16's second kernel: the stock Debian
// kernel's TCP timestamp offsets are probed by behaviour in the guest, and
// the short workload with a 16-port NAT range shows PAWS rejections under
// fully-random exactly when they depend on the ports (Debian 6.1.192 and
// later: stable 6.1.191's backport), each matched by the guest server's
// counter (PAWSEstab on 6.1), and none under plain masquerade.
func TestShortOnStockKernel(t *testing.T) {
	deb := needQEMU(t)
	out, err := Lab(context.Background(), Options{Kernel: deb, Binary: snatraceBinary(t), Backends: []natrule.Backend{natrule.Nftables},
		Args: []string{"--workload", "short", "--pods", "1", "--port-range", "40000-40015", "--connections", "200", "--round-size", "100",
			"--nat", "masquerade", "--nat", "masquerade to :20000-20015 fully-random"}})
	if err != nil {
		t.Fatal(err)
	}
	rep := out.Report
	if out.Exit != 0 || rep == nil || len(rep.Results) != 2 || rep.TSOffsets == nil {
		t.Fatalf("guest lab exit %d; console:\n%s", out.Exit, lastLines(out.Log, 30))
	}
	t.Logf("%s: timestamp offsets %s (%s)", rep.Kernel, rep.TSOffsets.Kind, rep.TSOffsets.Reason)
	plain, full := rep.Results[0], rep.Results[1]
	for _, r := range rep.Results {
		t.Logf("%s: %d connections, %d delayed, %d SYNs retransmitted, %s %d, SNAT clash %d", r.NAT, r.Connections, r.Retransmitted, r.SynRetrans,
			r.ServerPAWS.Counter, r.Causes.PAWSTimewait, r.Causes.SNATClash)
		if !r.Accounted {
			t.Errorf("%s: does not add up: %s", r.NAT, r.Note)
		}
	}
	if plain.Causes.PAWSTimewait != 0 {
		t.Errorf("plain masquerade: %d PAWS rejections, want 0", plain.Causes.PAWSTimewait)
	}
	switch rep.TSOffsets.Kind {
	case tsoffset.PerPort:
		if full.Causes.PAWSTimewait == 0 {
			t.Errorf("per-port offsets, fully-random on 16 ports: no PAWS rejection")
		}
	case tsoffset.PerAddress:
		if full.Causes.PAWSTimewait != 0 {
			t.Errorf("per-address offsets, one pod: %d PAWS rejections, want 0", full.Causes.PAWSTimewait)
		}
	default:
		t.Errorf("the guest's probe reached no verdict: %s", rep.TSOffsets.Reason)
	}
}
