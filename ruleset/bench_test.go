package ruleset

import (
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/kubegen"
)

// BenchmarkParseKubeProxy100k parses a 100,000-rule kube-proxy iptables-save
// dump (see BENCHMARKS.md (audit) for the side-by-side with iptables-restore).
func BenchmarkParseKubeProxy100k(b *testing.B) {
	var sb strings.Builder
	const services, endpoints = 9089, 3
	if err := kubegen.Write(&sb, services, endpoints); err != nil {
		b.Fatal(err)
	}
	dump := sb.String()
	b.SetBytes(int64(len(dump)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rs, err := Parse(dump, "kube100k", FormatAuto)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs.Rules) != 2 {
			b.Fatalf("got %d NAT rules, want 2", len(rs.Rules))
		}
	}
	b.ReportMetric(float64(kubegen.Rules(services, endpoints)), "rules")
}
