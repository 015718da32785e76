//go:build linux

package vmlab

import (
	"context"
	"testing"

	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
)

// udpLab runs `snatrace lab --proto udp` with args on the stock kernel and
// returns its two results (masquerade, fully-random), every lost query of
// which must be accounted for.
func udpLab(t *testing.T, deb string, args ...string) (plain, full *lab.Result) {
	t.Helper()
	out, err := Lab(context.Background(), Options{Kernel: deb, Binary: snatraceBinary(t),
		Args: append([]string{"--proto", "udp", "--udp-timeout", "1s"}, args...), Backends: []natrule.Backend{natrule.Nftables}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Exit != 0 || out.Report == nil || len(out.Report.Results) != 2 || out.Report.Proto != lab.UDP {
		t.Fatalf("guest lab exit %d; console:\n%s", out.Exit, lastLines(out.Log, 30))
	}
	for _, r := range out.Report.Results {
		t.Logf("%s %s: %d queries, %d lost, insert_failed %d, drop %d, clash_resolve %d", out.Report.Kernel, r.NAT,
			r.Queries, r.Lost, r.Conntrack.InsertFailed, r.Conntrack.Drop, r.Conntrack.ClashResolve)
		if !r.Accounted || !r.CountersAgree {
			t.Errorf("%s: accounted %v, counters agree %v: %s", r.NAT, r.Accounted, r.CountersAgree, r.Note)
		}
	}
	return out.Report.Results[0], out.Report.Results[1]
}

// TestUDPOnStockKernel is issue 17's second kernel: on the stock Debian
// kernel, parallel queries of one socket are resolved (clash_resolve rises,
// nothing is lost) through masquerade and fully-random alike, while pods
// sending from one port towards one resolver through plain masquerade lose
// queries, each one the guest kernel's insert_failed and drop, and
// fully-random loses at least 10x fewer.
func TestUDPOnStockKernel(t *testing.T) {
	deb := needQEMU(t)
	plain, full := udpLab(t, deb, "--workload", "pairs", "--connections", "4000")
	for _, r := range []*lab.Result{plain, full} {
		if r.Conntrack.ClashResolve == 0 || r.Lost != 0 || r.Conntrack.Drop != 0 {
			t.Errorf("pairs, %s: clash_resolve %d, lost %d, drop %d", r.NAT, r.Conntrack.ClashResolve, r.Lost, r.Conntrack.Drop)
		}
	}
	plain, full = udpLab(t, deb, "--workload", "same-port", "--until", "10")
	if plain.Lost < 10 || plain.Lost != plain.Conntrack.InsertFailed || plain.Lost != plain.Conntrack.Drop {
		t.Errorf("same-port, masquerade: %d lost, insert_failed %d, drop %d", plain.Lost, plain.Conntrack.InsertFailed, plain.Conntrack.Drop)
	}
	if full.Queries != plain.Queries || 10*full.Lost > plain.Lost {
		t.Errorf("same-port, fully-random: %d lost in %d queries, masquerade %d in %d", full.Lost, full.Queries, plain.Lost, plain.Queries)
	}
}
