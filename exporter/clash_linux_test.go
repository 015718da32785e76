//go:build linux

package exporter

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/trace"
)

// TestClashDropsLab feeds ClashDrops from the real tracer on a lab node while
// same-port bursts race: the counter rises by exactly the kernel's
// insert_failed delta, under the server's destination.
func TestClashDropsLab(t *testing.T) {
	ctx := context.Background()
	s, ino := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	tr, err := trace.Start(ctx, trace.Options{NetNS: ino})
	if errors.Is(err, trace.ErrMissing) {
		testenv.Skip(t, "tracer unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := NewClashDrops(DefaultClashDestinations)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range tr.Events() {
			c.Observe(ev)
		}
	}()
	r, err := s.Round(ctx, 400000, 10)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	<-done
	dst := s.Topo.Servers[0].Addr.String() + ":80"
	if got := testutil.ToFloat64(c.vec.WithLabelValues(dst)); uint64(got) != r.Conntrack.InsertFailed {
		t.Errorf("snatrace_snat_clash_drops_total{dst=%q} = %v, kernel insert_failed %d", dst, got, r.Conntrack.InsertFailed)
	}
	if n := testutil.CollectAndCount(c); n != 1 {
		t.Errorf("%d series, want 1", n)
	}
}
