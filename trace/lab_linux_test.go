//go:build linux

package trace_test

import (
	"context"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/trace"
)

// TestLabSamePortBurst traces a lab node while the lab's own same-port
// workload races SYNs through plain masquerade: the attributed SNAT clashes
// must equal the insert failures the lab accounted for the round, and the
// SYN retransmissions counted per destination must cover every one the lab's
// clients made (TCP_INFO).
func TestLabSamePortBurst(t *testing.T) {
	ctx := context.Background()
	s, node := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	tr, err := trace.Start(ctx, trace.Options{NetNS: node})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer tr.Close()

	r, err := s.Round(ctx, 400000, 10)
	if err != nil {
		t.Fatalf("lab round: %v", err)
	}
	want := int(r.Conntrack.InsertFailed)
	if want == 0 {
		testenv.Skip(t, "the lab made no clash in %d connections", r.Connections)
	}
	var clashes []trace.Event
	timeout := time.After(10 * time.Second)
collect:
	for len(clashes) < want {
		select {
		case ev := <-tr.Events():
			if ev.Kind == trace.KindSNATClash {
				clashes = append(clashes, ev)
			}
		case <-timeout:
			break collect
		}
	}
	// Anything more would show up promptly.
	extra := time.After(300 * time.Millisecond)
more:
	for {
		select {
		case ev := <-tr.Events():
			if ev.Kind == trace.KindSNATClash {
				clashes = append(clashes, ev)
			}
		case <-extra:
			break more
		}
	}
	if len(clashes) != want {
		t.Errorf("attributed %d SNAT clashes, the lab accounted insert_failed %d", len(clashes), want)
	}
	nodeAddrs := map[string]bool{}
	for _, srv := range s.Topo.Servers {
		nodeAddrs[srv.NodeAddr.String()] = true
	}
	for _, ev := range clashes {
		if ev.NetNS != node || !labnet.PodNet.Contains(ev.Orig.Src.Addr()) || !nodeAddrs[ev.NAT.Src.Addr().String()] {
			t.Errorf("clash %+v: want netns %d, a pod source in %v and a node uplink address as NAT source", ev, node, labnet.PodNet)
		}
	}
	rt, err := tr.Retransmits()
	if err != nil {
		t.Fatalf("Retransmits: %v", err)
	}
	var toServers uint64
	for _, srv := range s.Topo.Servers {
		for dst, n := range rt {
			if dst.Addr() == srv.Addr {
				toServers += n
			}
		}
	}
	// Other labs on the host may use the same server addresses: at least.
	if toServers < r.SynRetrans {
		// Which step lost them: the program not running (SYNRetransmits),
		// runs the kernel skipped (Missed), or the key (rt).
		st, err := tr.Stats()
		t.Errorf("tracer counted %d SYN retransmissions to the lab's servers, its clients made %d; all destinations %v, stats %+v (%v)",
			toServers, r.SynRetrans, rt, st, err)
	}
	t.Logf("%d connections, insert_failed %d, %d clashes attributed, SYN retransmissions: lab %d, tracer %d",
		r.Connections, want, len(clashes), r.SynRetrans, toServers)
}
