//go:build linux

package fix

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/netns"
)

// kubeLike renders an iptables-restore document of n rules shaped like
// kube-proxy's (services, endpoints, DNAT, marks), with racing MASQUERADE
// rules, plus masq extra plain MASQUERADE rules in a CNI chain.
func kubeLike(n, masq int) string {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	b.WriteString(":KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:CNI-MASQ - [0:0]\n")
	svcs := (n - masq - 6) / 4
	for i := 0; i < svcs; i++ {
		fmt.Fprintf(&b, ":KUBE-SVC-%06d - [0:0]\n:KUBE-SEP-%06d - [0:0]\n", i, i)
	}
	rules := []string{
		"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
		"-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
		"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
		"-A POSTROUTING -j CNI-MASQ",
		"-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
		"-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE",
	}
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	for i := 0; i < svcs; i++ {
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		ep := fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"ns/svc-%d cluster IP\" -m tcp --dport 80 -j KUBE-SVC-%06d\n", ip, i, i)
		fmt.Fprintf(&b, "-A KUBE-SVC-%06d -m comment --comment \"ns/svc-%d -> %s:8080\" -j KUBE-SEP-%06d\n", i, i, ep, i)
		fmt.Fprintf(&b, "-A KUBE-SEP-%06d -s %s/32 -j KUBE-MARK-MASQ\n", i, ep)
		fmt.Fprintf(&b, "-A KUBE-SEP-%06d -p tcp -m tcp -j DNAT --to-destination %s:8080\n", i, ep)
	}
	for i := 0; i < masq-1; i++ {
		fmt.Fprintf(&b, "-A CNI-MASQ -s 10.%d.%d.0/24 -j MASQUERADE\n", 100+i/250, i%250)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// nftLike renders an nft -f document of n rules in one nat chain, masq of
// them plain masquerade.
func nftLike(n, masq int) string {
	var b strings.Builder
	b.WriteString("table ip big {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	for i := 0; i < n; i++ {
		if i < masq {
			fmt.Fprintf(&b, "\t\tip saddr 10.%d.%d.0/24 counter masquerade\n", i/250, i%250)
		} else {
			fmt.Fprintf(&b, "\t\tip daddr 172.%d.%d.%d counter return\n", 16+i/62500, i/250%250, i%250)
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func benchApply(b *testing.B, install func(ns *netns.NS), cfg Config, want int) {
	ns := newNS(b, "bench")
	install(ns)
	cfg.NS = ns
	f := New(cfg)
	ctx := context.Background()
	backup := filepath.Join(b.TempDir(), "backup.json")
	var rollback time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, res, err := f.ApplyFresh(ctx, backup, 3)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Applied) != want || !res.Verified {
			b.Fatalf("applied %d (verified %v), want %d", len(res.Applied), res.Verified, want)
		}
		b.StopTimer()
		bk, err := LoadBackup(backup)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := f.Rollback(ctx, bk); err != nil {
			b.Fatal(err)
		}
		rollback += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/apply")
	b.ReportMetric(float64(rollback.Milliseconds())/float64(b.N), "ms/rollback")
}

// BenchmarkApply10k applies the fix (read, plan, checks, change, verify:
// everything `snatrace fix --apply` does) on 10,000-rule rulesets.
func BenchmarkApply10k(b *testing.B) {
	needRoot(b)
	const n = 10000
	iptables := func(bin string, masq int) func(ns *netns.NS) {
		return func(ns *netns.NS) { sh(b, ns, kubeLike(n, masq), bin, "-w") }
	}
	nft := func(masq int) func(ns *netns.NS) {
		return func(ns *netns.NS) { sh(b, ns, nftLike(n, masq), "nft", "-f", "-") }
	}
	cases := []struct {
		name    string
		install func(ns *netns.NS)
		cfg     Config
		want    int
	}{
		{"kube-proxy-like/iptables-legacy/2-racing", iptables("iptables-legacy-restore", 2), Config{}, 2},
		{"kube-proxy-like/iptables-nft/netlink/2-racing", iptables("iptables-nft-restore", 2), Config{SkipLegacy: true}, 2},
		{"kube-proxy-like/iptables-nft/restore/2-racing", iptables("iptables-nft-restore", 2), Config{SkipLegacy: true, Options: Options{IptablesNft: MethodRestore}}, 2},
		{"nftables/10-racing", nft(10), Config{SkipLegacy: true}, 10},
		{"nftables/10000-racing", nft(n), Config{SkipLegacy: true}, n},
		{"kube-proxy-like/iptables-legacy/1000-racing", iptables("iptables-legacy-restore", 1000), Config{}, 1000},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchApply(b, c.install, c.cfg, c.want) })
	}
}

// BenchmarkWatchReaction measures, over 100 rewrites of an owner's
// nftables chain (one every 100 ms), the time from the rewrite to the
// racing rule reading fully-random again.
func BenchmarkWatchReaction(b *testing.B) {
	needRoot(b)
	for _, c := range []struct {
		name string
		ro   reactionOpts
	}{
		{"nftables-monitor", reactionOpts{n: 100}},
		{"nftables-monitor-10k-churn", reactionOpts{n: 100, background: 10_000, churn: 50 * time.Millisecond}},
		{"nftables-monitor-100k-churn", reactionOpts{n: 100, background: 100_000, churn: 50 * time.Millisecond}},
		{"nftables-monitor-lasting-owner", reactionOpts{n: 100, lasting: true}},
		{"nftables-monitor-lasting-owner-100k-churn", reactionOpts{n: 100, background: 100_000, churn: 50 * time.Millisecond, lasting: true}},
		{"iptables-legacy-lock-watch", reactionOpts{legacy: true, n: 100}},
		{"iptables-legacy-periodic-2s", reactionOpts{legacy: true, noMonitor: true, n: 20}}, // a re-read every 2 s: 100 rewrites would take minutes
	} {
		b.Run(c.name, func(b *testing.B) {
			var all []time.Duration
			ro := c.ro
			ro.period, ro.interval, ro.limit = 100*time.Millisecond, DefaultInterval, 5*time.Second
			for i := 0; i < b.N; i++ {
				all = append(all, reactionsWith(b, ro)...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(all[len(all)/2]), "median-ms")
			b.ReportMetric(ms(all[len(all)*9/10]), "p90-ms")
			b.ReportMetric(ms(all[len(all)-1]), "max-ms")
			b.ReportMetric(float64(len(all)), "rewrites")
		})
	}
}
