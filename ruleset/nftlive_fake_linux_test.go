//go:build linux

package ruleset

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/nftnl/nftnltest"
	"github.com/snatrace/snatrace/tool"
)

// TestReadFakeKernel decodes a netlink dump without root: chains, native
// and xt rules, jumps and the generation, as a live read gives them.
func TestReadFakeKernel(t *testing.T) {
	ip := byte(unix.NFPROTO_IPV4)
	k := &nftnltest.Kernel{Gen: 9,
		Chains: []nftnltest.Chain{
			// nft add chain ip docker-bridges postrouting '{ type nat hook postrouting priority srcnat; }'
			{Family: ip, Table: "docker-bridges", Name: "postrouting", Handle: 1, Hook: unix.NF_INET_POST_ROUTING, Priority: 100, Type: "nat"},
			// iptables-nft -t nat -N KUBE-POSTROUTING (and the built-in POSTROUTING)
			{Family: ip, Table: "nat", Name: "POSTROUTING", Handle: 2, Hook: unix.NF_INET_POST_ROUTING, Priority: 100, Type: "nat"},
			{Family: ip, Table: "nat", Name: "KUBE-POSTROUTING", Handle: 3, Hook: -1},
		},
		Rules: []nftnltest.Rule{
			// nft add rule ip docker-bridges postrouting oifname != "docker0" masquerade
			{Family: ip, Table: "docker-bridges", Chain: "postrouting", Handle: 10, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("docker0")},
				&expr.Masq{},
			}},
			// a masquerade with a port range but no PROTO_SPECIFIED flag, as
			// google/nftables writes it: the kernel ignores the range
			{Family: ip, Table: "docker-bridges", Chain: "postrouting", Handle: 11, Exprs: []expr.Any{
				&expr.Immediate{Register: 3, Data: []byte{0x07, 0xd0}},
				&expr.Immediate{Register: 4, Data: []byte{0x08, 0x0f}},
				&expr.Masq{ToPorts: true, RegProtoMin: 3, RegProtoMax: 4},
			}},
			// iptables-nft -t nat -A POSTROUTING -j KUBE-POSTROUTING
			{Family: ip, Table: "nat", Chain: "POSTROUTING", Handle: 20, Exprs: []expr.Any{
				&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: "KUBE-POSTROUTING"},
			}},
			// iptables-nft -t nat -A KUBE-POSTROUTING -j MASQUERADE --random-fully
			{Family: ip, Table: "nat", Chain: "KUBE-POSTROUTING", Handle: 21, Exprs: []expr.Any{
				&expr.Counter{},
				&expr.Target{Name: "MASQUERADE", Rev: 0, Info: &xt.NatIPv4MultiRangeCompat{{Flags: unix.NF_NAT_RANGE_PROTO_RANDOM_FULLY}}},
			}},
		},
	}
	rs, err := Read(context.Background(), ReadOptions{Runner: &tool.Fake{Installed: []string{}}, Nftables: []nftnl.Option{nftnl.WithTestDial(k.Func())}})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Generation != 9 || len(rs.Rules) != 3 {
		t.Fatalf("generation %d, %d rules %+v; want 9 and 3", rs.Generation, len(rs.Rules), rs.Rules)
	}
	want := []struct {
		key, text string
		backend   Backend
		owner     Owner
		fully     bool
	}{
		{"nftables ip docker-bridges postrouting #1", `oifname != "docker0" masquerade`, natrule.Nftables, Docker, false},
		{"nftables ip docker-bridges postrouting #2", `masquerade`, natrule.Nftables, Docker, false},
		{"iptables-nft ip nat KUBE-POSTROUTING #1", `xt target MASQUERADE (masquerade fully-random)`, natrule.IptablesNFT, KubeProxy, true},
	}
	for i, w := range want {
		r := rs.Rules[i]
		if r.Key() != w.key || r.Text != w.text || r.Backend != w.backend || r.Owner != w.owner || r.NAT.FullyRandom != w.fully || r.Hook != "postrouting" {
			t.Errorf("rule %d: %s %q %s %s fully=%v hook %q; want %s %q %s %s fully=%v", i, r.Key(), r.Text, r.Backend, r.Owner, r.NAT.FullyRandom, r.Hook, w.key, w.text, w.backend, w.owner, w.fully)
		}
	}
	if len(rs.Warnings) != 1 || !strings.Contains(rs.Warnings[0], "handle 11: masquerade has a port range without NF_NAT_RANGE_PROTO_SPECIFIED") {
		t.Errorf("warnings %q: want the ignored port range of handle 11", rs.Warnings)
	}
}

func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

// A dump that gives a chain or a rule twice, or skips a rule, was torn by
// a transaction the kernel did not flag, and is read again: each rule is
// listed once.
func TestReadRepeatsATornDump(t *testing.T) {
	ip := byte(unix.NFPROTO_IPV4)
	for _, tc := range []struct {
		name                 string
		chains, rules, skips int
	}{{"chain twice", 1, 0, 0}, {"rule twice", 0, 1, 0}, {"both, twice", 2, 2, 0}, {"a rule skipped", 0, 0, 1}} {
		k := &nftnltest.Kernel{Gen: 4, TornChains: tc.chains, TornRules: tc.rules, SkipRules: tc.skips,
			Chains: []nftnltest.Chain{
				{Family: ip, Table: "filter", Name: "forward", Handle: 1, Hook: unix.NF_INET_FORWARD, Type: "filter"},
				{Family: ip, Table: "host-nat", Name: "post", Handle: 2, Hook: unix.NF_INET_POST_ROUTING, Priority: 100, Type: "nat"},
			},
			Rules: []nftnltest.Rule{
				{Family: ip, Table: "host-nat", Chain: "post", Handle: 3, Exprs: []expr.Any{&expr.Masq{}}},
				{Family: ip, Table: "host-nat", Chain: "post", Handle: 4, Exprs: []expr.Any{&expr.Counter{}}},
				{Family: ip, Table: "host-nat", Chain: "post", Handle: 5, Exprs: []expr.Any{&expr.Masq{FullyRandom: true}}},
			},
		}
		rs, err := Read(context.Background(), ReadOptions{Runner: &tool.Fake{Installed: []string{}}, Nftables: []nftnl.Option{nftnl.WithTestDial(k.Func())}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(rs.Rules) != 2 || rs.Rules[0].Key() != "nftables ip host-nat post #1" || rs.Rules[1].Key() != "nftables ip host-nat post #3" || k.TornChains+k.TornRules+k.SkipRules != 0 {
			t.Errorf("%s: rules %v (torn dumps left: %d chains, %d rules, %d skips); want host-nat post #1 and #3 once", tc.name, rs.Rules, k.TornChains, k.TornRules, k.SkipRules)
		}
	}
}

// A dormant table's chains do not run: its masquerade is not a rule of
// the node, and a warning says why it is left out.
func TestReadSkipsDormantTables(t *testing.T) {
	ip := byte(unix.NFPROTO_IPV4)
	k := &nftnltest.Kernel{Gen: 2, Dormant: []string{"spare"},
		Chains: []nftnltest.Chain{
			{Family: ip, Table: "spare", Name: "post", Handle: 1, Hook: unix.NF_INET_POST_ROUTING, Priority: 100, Type: "nat"},
			{Family: ip, Table: "live", Name: "post", Handle: 2, Hook: unix.NF_INET_POST_ROUTING, Priority: 100, Type: "nat"},
		},
		Rules: []nftnltest.Rule{
			{Family: ip, Table: "spare", Chain: "post", Handle: 3, Exprs: []expr.Any{&expr.Masq{}}},
			{Family: ip, Table: "live", Chain: "post", Handle: 4, Exprs: []expr.Any{&expr.Masq{FullyRandom: true}}},
		},
	}
	rs, err := Read(context.Background(), ReadOptions{Runner: &tool.Fake{Installed: []string{}}, Nftables: []nftnl.Option{nftnl.WithTestDial(k.Func())}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 1 || rs.Rules[0].Key() != "nftables ip live post #1" {
		t.Errorf("rules %v; want only live post #1", rs.Rules)
	}
	want := "nftables table ip spare is dormant (flags dormant): the kernel runs none of its chains, so the source NAT of its chain post is not audited"
	if !slices.Contains(rs.Warnings, want) {
		t.Errorf("warnings %q; want %q", rs.Warnings, want)
	}
}
