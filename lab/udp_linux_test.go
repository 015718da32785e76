//go:build linux

package lab

import (
	"testing"
	"time"

	"github.com/snatrace/snatrace/trace"
)

// udpRun runs a UDP lab with a short client timeout (the waits are real)
// and checks what every UDP run promises: nothing left behind, the host
// untouched, the two counter sources agree, and the per-CPU counters add
// up to the totals.
func udpRun(t *testing.T, cfg Config) *Report {
	t.Helper()
	cfg.Proto = UDP
	cfg.UDP.Timeout = 500 * time.Millisecond
	rep := runClean(t, cfg)
	for _, r := range rep.Results {
		t.Logf("%s: %d queries, %d lost, %d retried, insert_failed %d, drop %d, clash_resolve %d",
			r.NAT, r.Queries, r.Lost, r.Retried, r.Conntrack.InsertFailed, r.Conntrack.Drop, r.Conntrack.ClashResolve)
		if !r.CountersAgree {
			t.Errorf("%s: /proc and ctnetlink disagree: %+v vs %+v", r.NAT, r.Conntrack, r.ConntrackNetlink)
		}
		var sum CPUConntrack
		for _, c := range r.ConntrackPerCPU {
			sum.InsertFailed += c.InsertFailed
			sum.Drop += c.Drop
			sum.ClashResolve += c.ClashResolve
		}
		if sum.InsertFailed != r.Conntrack.InsertFailed || sum.Drop != r.Conntrack.Drop || sum.ClashResolve != r.Conntrack.ClashResolve {
			t.Errorf("%s: per-CPU counters %+v do not add up to %+v", r.NAT, sum, r.Conntrack)
		}
	}
	return rep
}

// TestUDPCrossPodLossAndFix is the promise for the cross-pod
// trigger: pods sending from one source port towards one resolver through
// plain masquerade lose queries, every lost query is one the node counted
// in insert_failed and in drop (nothing else lost, nothing resolved: the
// clash is in the reply direction), and fully-random loses at least 10x
// fewer in as many queries.
func TestUDPCrossPodLossAndFix(t *testing.T) {
	rep := udpRun(t, Config{
		Modes:       modes(t, "masquerade", "masquerade fully-random"),
		Workload:    WorkloadConfig{Name: SamePort},
		Pods:        2,
		Connections: 20000,
	})
	plain, full := rep.Results[0], rep.Results[1]
	if plain.Lost < 40 {
		t.Fatalf("masquerade: %d queries lost in %d, want >= 40", plain.Lost, plain.Queries)
	}
	if plain.Lost != plain.Conntrack.InsertFailed || plain.Lost != plain.Conntrack.Drop {
		t.Errorf("masquerade: %d queries lost, node insert_failed %d, drop %d", plain.Lost, plain.Conntrack.InsertFailed, plain.Conntrack.Drop)
	}
	if !plain.Accounted || plain.Causes.SNATClash != plain.Lost {
		t.Errorf("masquerade: accounted %v, SNAT clashes %d of %d lost: %s", plain.Accounted, plain.Causes.SNATClash, plain.Lost, plain.Note)
	}
	// Each lost query was sent again after the timeout, and answered.
	if uint64(plain.Retried) != plain.Lost || plain.FailedQueries != 0 || plain.LatencyMS.Max < 500 {
		t.Errorf("masquerade: %d retried, %d failed, max latency %.1f ms for %d lost", plain.Retried, plain.FailedQueries, plain.LatencyMS.Max, plain.Lost)
	}
	if full.Queries != plain.Queries {
		t.Errorf("fully-random sent %d queries, masquerade %d", full.Queries, plain.Queries)
	}
	if !full.Accounted || full.Lost != full.Conntrack.Drop {
		t.Errorf("fully-random: %d lost, drop %d, accounted %v: %s", full.Lost, full.Conntrack.Drop, full.Accounted, full.Note)
	}
	if 10*full.Lost > plain.Lost {
		t.Errorf("fully-random: %d lost vs masquerade %d: not 10x fewer", full.Lost, plain.Lost)
	}
}

// TestUDPPairsResolved is the same-socket variant: an A and an AAAA query
// leave one socket at the same instant on two CPUs. Through masquerade the
// entries are identical (merged, 4.19) and through fully-random they differ
// in the reply only (inserted, 5.6): this kernel resolves both, so
// clash_resolve rises and no query is lost.
func TestUDPPairsResolved(t *testing.T) {
	rep := udpRun(t, Config{
		Modes:       modes(t, "masquerade", "masquerade fully-random"),
		Workload:    WorkloadConfig{Name: Pairs},
		Connections: 8000,
	})
	for _, r := range rep.Results {
		if r.Conntrack.ClashResolve == 0 {
			t.Errorf("%s: clash_resolve did not rise in %d pairs: the pairs did not race", r.NAT, r.Queries/2)
		}
		if r.Lost != 0 || r.Conntrack.Drop != 0 || r.Conntrack.InsertFailed != 0 || !r.Accounted {
			t.Errorf("%s: %d lost, insert_failed %d, drop %d, accounted %v: %s", r.NAT, r.Lost, r.Conntrack.InsertFailed, r.Conntrack.Drop, r.Accounted, r.Note)
		}
	}
}

// TestUDPService runs both triggers against a kube-proxy-like DNAT service
// with two backends: parallel queries DNATed to different backends are
// resolved (5.6), and cross-pod same-port queries still lose exactly what
// the node dropped (only those that met on one backend can clash).
func TestUDPService(t *testing.T) {
	pairs := udpRun(t, Config{
		Modes:       modes(t, "masquerade"),
		Workload:    WorkloadConfig{Name: Pairs},
		Servers:     2,
		UDP:         UDPConfig{Service: true},
		Connections: 4000,
	})
	r := pairs.Results[0]
	if r.Conntrack.ClashResolve == 0 || r.Lost != 0 || r.Conntrack.Drop != 0 {
		t.Errorf("service pairs: clash_resolve %d, lost %d, drop %d", r.Conntrack.ClashResolve, r.Lost, r.Conntrack.Drop)
	}
	if pairs.UDP == nil || pairs.UDP.Service == "" {
		t.Errorf("report does not name the service: %+v", pairs.UDP)
	}
	cross := udpRun(t, Config{
		Modes:       modes(t, "masquerade"),
		Workload:    WorkloadConfig{Name: SamePort},
		Pods:        2,
		Servers:     2,
		UDP:         UDPConfig{Service: true},
		Connections: 100000,
		Until:       10,
	})
	r = cross.Results[0]
	if r.Lost == 0 || r.Lost != r.Conntrack.Drop || !r.Accounted {
		t.Errorf("service same-port: lost %d, drop %d, accounted %v: %s", r.Lost, r.Conntrack.Drop, r.Accounted, r.Note)
	}
}

// TestUDPTrace runs both UDP triggers with the eBPF tracer on the node:
// every lost query is one UDP SNAT-clash drop the tracer attributes to its
// pod's tuple, and the clashes the kernel resolved are reported apart, as
// many as clash_resolve counted.
func TestUDPTrace(t *testing.T) {
	for _, w := range []string{SamePort, Pairs} {
		t.Run(w, func(t *testing.T) {
			rep := udpRun(t, Config{
				Modes:       modes(t, "masquerade"),
				Workload:    WorkloadConfig{Name: w},
				Connections: 4000,
				Trace:       true,
			})
			r := rep.Results[0]
			tr := r.Trace
			if tr == nil {
				t.Fatal("no trace result")
			}
			t.Logf("trace: %+v", *tr)
			if uint64(tr.Attributed) != r.Lost || tr.Unmatched != 0 || tr.Extra != 0 {
				t.Errorf("%d lost queries, tracer attributed %d (%d unmatched, %d extra)", r.Lost, tr.Attributed, tr.Unmatched, tr.Extra)
			}
			// The fexit program sees every resolved clash; the tracepoint
			// mode sees none (nothing is dropped), and must not count them
			// as drops either.
			switch {
			case tr.Mode == string(trace.ModeFexit) && uint64(tr.Resolved) != r.Conntrack.ClashResolve:
				t.Errorf("tracer saw %d resolved clashes, clash_resolve %d", tr.Resolved, r.Conntrack.ClashResolve)
			case tr.Mode == string(trace.ModeTracepoint) && (tr.Resolved != 0 || tr.OtherDrops != 0):
				t.Errorf("tracepoint mode: %d resolved, %d other drops, want none", tr.Resolved, tr.OtherDrops)
			}
			if w == SamePort && r.Lost == 0 || w == Pairs && r.Conntrack.ClashResolve == 0 {
				t.Errorf("%s: nothing to trace (lost %d, resolved %d)", w, r.Lost, r.Conntrack.ClashResolve)
			}
		})
	}
}
