//go:build linux

package ruleset

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/snatrace/snatrace/internal/kubegen"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/nftnl"
)

// kubeNS makes a namespace holding a kube-proxy-like nftables table of about
// rules rules (endpoints picked by numgen rules, not anonymous maps, so that
// 300,000 rules load in seconds) and its host masquerade.
func kubeNS(tb testing.TB, rules int) *netns.NS {
	ns := netnstest.New(tb, "rs-scale")
	var sb strings.Builder
	if err := kubegen.WriteNft(&sb, rules, false); err != nil {
		tb.Fatal(err)
	}
	netnstest.Run(tb, ns, sb.String(), "nft", "-f", "-")
	return ns
}

// BenchmarkReadLive reads kube-proxy-like namespaces of 10,000 to 300,000
// rules over netlink: the time per read grows with the rules (the chain
// list), not with their square (BENCHMARKS.md "Scale").
func BenchmarkReadLive(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 300_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			ns := kubeNS(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rs, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
				if err != nil {
					b.Fatal(err)
				}
				if len(rs.Rules) != 2 {
					b.Fatalf("read %d NAT rules, want 2", len(rs.Rules))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/rule")
		})
	}
}

// BenchmarkReadCached is the read a watcher makes at each round: the chain
// list kept in a ChainCache (no commit comes between the reads here), the
// chains source NAT runs in read, the whole Ruleset made and its rules'
// owners attributed. Its cost should follow those chains, not the 3,600 to
// 109,000 chains of the namespace.
func BenchmarkReadCached(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 300_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			ns := kubeNS(b, n)
			cc := &ChainCache{}
			read := func() {
				rs, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true, Chains: cc})
				if err != nil {
					b.Fatal(err)
				}
				if len(rs.Rules) != 2 || rs.Rules[0].Owner == "" {
					b.Fatalf("read %d NAT rules (%+v), want 2 with owners", len(rs.Rules), rs.Rules)
				}
			}
			read() // fills the cache
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				read()
			}
		})
	}
}

// writer commits to table kube-proxy of ns every period until ctx ends:
// the chain churn (no source NAT runs in it) or masquerading (the SNAT
// chain), flushed and refilled in one netlink batch. It counts its commits.
func writer(ctx context.Context, tb testing.TB, ns *netns.NS, chainName string, period time.Duration, commits *atomic.Int64) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		tb.Error(err)
		return
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kube-proxy"}
	chain := &nftables.Chain{Table: table, Name: chainName}
	if chainName == "churn" {
		c.AddChain(chain)
	}
	for ctx.Err() == nil {
		c.FlushChain(chain)
		exprs := []expr.Any{&expr.Counter{}}
		if chainName != "churn" {
			exprs = append(exprs, &expr.Masq{FullyRandom: true})
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
		if err := c.Flush(); err != nil {
			if ctx.Err() == nil {
				tb.Error(err)
			}
			return
		}
		commits.Add(1)
		time.Sleep(period)
	}
}

// BenchmarkReadUnderChurn reads a 100,000-rule namespace while another
// writer commits, as kube-proxy does: every 10 ms to a chain no source-NAT
// hook reaches (the read accepts the overlapped read: nothing it read
// changed), every second or every 10 ms to the masquerading chain itself
// (the read must start again, and may give up: ErrChanging after
// nftnl.MaxTries).
func BenchmarkReadUnderChurn(b *testing.B) {
	ns := kubeNS(b, 100_000)
	for _, c := range []struct {
		chain  string
		period time.Duration
	}{{"churn", 10 * time.Millisecond}, {"masquerading", time.Second}, {"masquerading", 10 * time.Millisecond}} {
		chain := c.chain
		b.Run(fmt.Sprintf("%s/every=%v", c.chain, c.period), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			var commits atomic.Int64
			done := make(chan struct{})
			go func() { defer close(done); writer(ctx, b, ns, chain, c.period, &commits) }()
			reads, gaveUp := 0, 0
			b.ResetTimer()
			for range b.N {
				_, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
				switch {
				case errors.Is(err, nftnl.ErrChanging):
					gaveUp++
				case err != nil:
					b.Fatal(err)
				default:
					reads++
				}
			}
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(reads), "reads")
			b.ReportMetric(float64(gaveUp), "gave-up")
			b.ReportMetric(float64(commits.Load())/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// TestReadKeepsChanging: under a writer that rewrites the masquerading
// chain as fast as it can, a read either succeeds (a consistent read) or
// fails with ErrChanging, saying so, in bounded time.
func TestReadKeepsChanging(t *testing.T) {
	ns := kubeNS(t, 10_000)
	ctx, cancel := context.WithCancel(context.Background())
	var commits atomic.Int64
	done := make(chan struct{})
	go func() { defer close(done); writer(ctx, t, ns, "masquerading", 0, &commits) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	rs, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
	took := time.Since(start)
	if took > 10*time.Second {
		t.Errorf("the read took %v under a constant writer: want bounded retries", took)
	}
	switch {
	case errors.Is(err, nftnl.ErrChanging):
		if !strings.Contains(err.Error(), "kept changing") {
			t.Errorf("error %q does not say the ruleset kept changing", err)
		}
	case err != nil:
		t.Fatal(err)
	case len(rs.Rules) != 2:
		t.Errorf("a consistent read found %d NAT rules, want 2", len(rs.Rules))
	}
	t.Logf("read in %v during %d commits: %v", took, commits.Load(), err)
}
