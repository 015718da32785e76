//go:build linux

package lab

import (
	"context"
	"testing"
	"time"
)

// TestEphemeralPortRange checks that the pods' narrowed ip_local_port_range
// is what their kernels choose from, and that every connection completes
// without NAT (mode none, servers route back to the pods).
func TestEphemeralPortRange(t *testing.T) {
	needRoot(t)
	topo, err := Build(context.Background(), TopologyConfig{Prefix: NewPrefix(), Pods: 4, Servers: 1, PortRange: [2]uint16{40000, 40009}})
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	cpus, err := clientCPUs()
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{topo: topo, dport: DefaultDport, cpus: cpus, timeout: 3 * time.Second}
	stop, err := d.listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	p := newPlanner(WorkloadConfig{Name: Ephemeral}, 4, 1, 1)
	atts, err := d.round(context.Background(), p.next(40), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 40 {
		t.Fatalf("%d attempts, want 40", len(atts))
	}
	for _, a := range atts {
		if a.err != nil {
			t.Errorf("pod %d: %v", a.pod, a.err)
		}
		if a.localPort < 40000 || a.localPort > 40009 {
			t.Errorf("pod %d used port %d, outside 40000-40009", a.pod, a.localPort)
		}
	}
}

// TestSteadyRate checks the steady workload sends what was asked: the
// connection count, spread over the requested time.
func TestSteadyRate(t *testing.T) {
	needRoot(t)
	rep, err := Run(context.Background(), Config{
		Modes:       modes(t, "masquerade fully-random"),
		Workload:    WorkloadConfig{Name: Steady, Rate: 400},
		Pods:        4,
		Connections: 200, // 0.5 s at 400/s
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Connections != 200 || r.Failed != 0 {
		t.Fatalf("connections %d, failed %d; want 200, 0", r.Connections, r.Failed)
	}
	// 200 evenly spaced connections at 400/s take 0.4975 s to send.
	if rep.TrafficSeconds < 0.49 {
		t.Errorf("traffic took %.3f s, want >= 0.49 s at 400/s", rep.TrafficSeconds)
	}
}

func TestPlannerSamePort(t *testing.T) {
	p := newPlanner(WorkloadConfig{Name: SamePort, BasePort: 20000, PortSpan: 3}, 2, 2, 1)
	bursts := p.next(8)
	if len(bursts) != 4 {
		t.Fatalf("%d bursts, want 4", len(bursts))
	}
	wantPorts := []uint16{20000, 20001, 20002, 20000}
	for i, b := range bursts {
		if len(b) != 2 || b[0].port != wantPorts[i] || b[1].port != wantPorts[i] || b[0].pod != 0 || b[1].pod != 1 || b[0].server != i%2 {
			t.Errorf("burst %d = %+v, want pods 0,1 on port %d to server %d", i, b, wantPorts[i], i%2)
		}
	}
}
