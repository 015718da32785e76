//go:build linux

package ruleset

import (
	"context"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/nftnl"
)

// TestAffected commits changes in a namespace while the monitor listens,
// and asks the last read whether each commit could have changed its
// source-NAT rules: a rule in a chain it read, a new nat base chain at
// postrouting, an element of a verdict map it followed, a deleted table
// holding its chains — yes; a rule or chain that no source-NAT hook reaches,
// an element of a map it did not follow, another table — no.
func TestAffected(t *testing.T) {
	ns := labNS(t)
	inNS(t, ns, `table ip t {
	map followed {
		type ifname : verdict
		elements = { "eth0" : jump masq }
	}
	map other {
		type ipv4_addr : verdict
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname vmap @followed
	}
	chain masq { masquerade; }
	chain services { ip daddr 10.96.0.1 counter; }
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr vmap @other
	}
}
table ip unrelated {
	chain c { counter; }
}
`, "nft", "-f", "-")
	rs, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	commits := watchCommits(t, ns)

	for _, c := range []struct {
		nft  string
		want bool
	}{
		{"add rule ip t services ip daddr 10.96.0.2 counter", false},
		{"add chain ip t service-new", false},
		{"add rule ip t masq counter", true},
		{"add element ip t other { 10.96.0.3 : jump services }", false},
		{"add element ip t followed { \"eth1\" : jump masq }", true},
		{"add chain ip t post3 { type nat hook postrouting priority 110; }", true},
		{"add chain ip t filt { type filter hook forward priority 0; }", false},
		{"delete table ip unrelated", false},
		{"delete table ip t", true},
	} {
		inNS(t, ns, c.nft+"\n", "nft", "-f", "-")
		select {
		case commit := <-commits:
			if got := rs.Affected(commit); got != c.want {
				t.Errorf("%s: Affected = %v, want %v (events %+v)", c.nft, got, c.want, commit.Events)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no commit event", c.nft)
		}
	}
	if !rs.Affected(nftnl.Commit{Lost: true}) {
		t.Error("a commit with lost events does not count as affecting the read")
	}
	if !(*Ruleset)(nil).Affected(nftnl.Commit{}) || !(&Ruleset{}).Affected(nftnl.Commit{}) {
		t.Error("a Ruleset not read live does not count as affected")
	}
}

// TestChainCache reads a namespace twice per commit, once with a chain
// list kept from the monitor's commits and once from scratch: the two
// reads agree (every chain, rule counts and backends included), the cache
// is used after rule-only commits and not after a commit that adds a
// chain, and a gap in generations invalidates it. Cached reads that find
// the same rule counts share one chain slice, which an append copies.
func TestChainCache(t *testing.T) {
	ns := labNS(t)
	inNS(t, ns, "table ip t {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tmasquerade\n\t}\n}\n", "nft", "-f", "-")
	cc := &ChainCache{}
	read := func() (*Ruleset, *Ruleset) {
		cached, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true, Chains: cc})
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
		if err != nil {
			t.Fatal(err)
		}
		return cached, fresh
	}
	same := func(step string, a, b *Ruleset) {
		t.Helper()
		if summary(a) != summary(b) || !slices.Equal(a.Chains, b.Chains) {
			t.Errorf("%s: the cached read differs:\n%s%+v\nfrom the full read:\n%s%+v", step, summary(a), a.Chains, summary(b), b.Chains)
		}
	}
	a, b := read()
	same("first read", a, b)

	commits := watchCommits(t, ns)
	commit := func(nft string) {
		t.Helper()
		inNS(t, ns, nft+"\n", "nft", "-f", "-")
		select {
		case c := <-commits:
			cc.Observe(c)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no commit event", nft)
		}
	}

	commit("add rule ip t post ip saddr 10.1.0.0/16 masquerade fully-random")
	if _, ok := cc.valid(a.Generation + 1); !ok {
		t.Errorf("a rule-only commit invalidated the chain list")
	}
	a, b = read()
	same("after a rule-only commit", a, b)
	if len(a.Rules) != 2 {
		t.Errorf("cached read found %d rules, want 2", len(a.Rules))
	}
	again, _ := read()
	same("read again", again, b)
	if unsafe.SliceData(again.Chains) != unsafe.SliceData(a.Chains) || cap(a.Chains) != len(a.Chains) {
		t.Errorf("two cached reads of the same rules: chains shared %v, capacity %d for %d chains; want shared, capacity = length",
			unsafe.SliceData(again.Chains) == unsafe.SliceData(a.Chains), cap(a.Chains), len(a.Chains))
	}

	commit("add chain ip t more\nadd rule ip t more masquerade random\nadd rule ip t post jump more")
	if _, ok := cc.valid(a.Generation + 1); ok {
		t.Errorf("a commit adding a chain left the chain list valid")
	}
	a, b = read()
	same("after a commit adding a chain", a, b)
	if len(a.Rules) != 3 {
		t.Errorf("read after a new chain found %d rules, want 3", len(a.Rules))
	}

	// A commit the cache did not see (a gap) invalidates it.
	cc.Observe(nftnl.Commit{Gen: a.Generation + 5})
	if _, ok := cc.valid(a.Generation + 5); ok {
		t.Errorf("a gap in generations left the chain list valid")
	}
}

// watchCommits follows the namespace's nftables commits until the test
// ends.
func watchCommits(t *testing.T, ns *netns.NS) <-chan nftnl.Commit {
	t.Helper()
	mon, err := nftnl.NewMonitor(ns)
	if err != nil {
		t.Fatal(err)
	}
	commits := make(chan nftnl.Commit, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.RunCommits(ctx, func(c nftnl.Commit) { commits <- c }) }()
	t.Cleanup(func() { cancel(); <-done })
	return commits
}
