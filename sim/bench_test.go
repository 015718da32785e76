package sim

import (
	"context"
	"testing"

	"github.com/snatrace/snatrace/natmodel"
)

// BenchmarkRun measures the simulator on one core: simulated connection
// attempts (SYNs) per second and allocations per attempt, for plain
// masquerade on the 5.0 era.
func BenchmarkRun(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"5.0/masquerade/ephemeral", Config{Era: natmodel.Era50, Workload: Ephemeral, Pods: 64, CPUs: 16, Servers: 50, Connections: 200_000}},
		{"5.0/masquerade/same-port", Config{Era: natmodel.Era50, Workload: SamePort, Pods: 64, CPUs: 16, Servers: 50, Connections: 200_000}},
		{"5.0/masquerade/steady", Config{Era: natmodel.Era50, Workload: Steady, Rate: 5000, Pods: 64, CPUs: 16, Servers: 50, Connections: 200_000}},
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
