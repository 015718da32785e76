package sim

import (
	"context"
	"testing"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
)

// labLike closes connections the way the lab does (reset: no pod TIME_WAIT,
// conntrack CLOSE for 10 s).
func labLike(c Config) Config {
	c.Lifetime = Dist{Kind: Const, A: labLifetime}
	c.ClientTimeWait = 1
	c.CTTimeWait = labCloseTimeout
	return c
}

// BenchmarkRun measures the simulator on one core: simulated connection
// attempts (SYNs) per second and allocations per attempt, for plain
// masquerade on the 5.0 era.
func BenchmarkRun(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"5.0/masquerade/lab-default", labLike(Config{Era: natmodel.Era50, Workload: labnet.SamePort, Pods: 16, CPUs: 2, Connections: 20_000})},
		{"5.0/masquerade/same-port", labLike(Config{Era: natmodel.Era50, Workload: labnet.SamePort, Pods: 16, CPUs: 2, Servers: 50, Connections: 100_000})},
		{"5.0/masquerade/ephemeral", labLike(Config{Era: natmodel.Era50, Workload: labnet.Ephemeral, Pods: 64, CPUs: 16, Servers: 50, Connections: 100_000})},
		{"5.0/masquerade/steady", labLike(Config{Era: natmodel.Era50, Workload: labnet.Steady, Rate: 5000, Pods: 64, CPUs: 16, Servers: 50, Connections: 100_000})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.cfg.NAT = mode(b, "masquerade")
			var syns uint64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bc.cfg.Seed = uint64(i)
				r, err := Run(context.Background(), bc.cfg)
				if err != nil {
					b.Fatal(err)
				}
				syns += r.SYNs
			}
			b.ReportMetric(float64(syns)/b.Elapsed().Seconds(), "attempts/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(syns), "ns/attempt")
		})
	}
}
