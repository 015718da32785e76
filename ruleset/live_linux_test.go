//go:build linux

package ruleset

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/tool"
)

// labNS creates a throwaway namespace snt-rs-<pid>-<n> deleted on cleanup.
func labNS(t *testing.T) *netns.NS { return netnstest.New(t, "rs") }

// inNS runs a command inside ns with stdin, failing the test on error.
func inNS(t *testing.T, ns *netns.NS, stdin string, args ...string) {
	t.Helper()
	netnstest.Run(t, ns, stdin, args[0], args[1:]...)
}

// TestReadLive installs rules with the real iptables-legacy, iptables-nft and
// nft in a fresh namespace and checks every rule, flag and owner Read finds.
func TestReadLive(t *testing.T) {
	ns := labNS(t)
	inNS(t, ns, `table inet lab {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" meta l4proto tcp ip saddr 10.0.0.0/8 snat ip to 192.0.2.1-192.0.2.4:2000-2100 random,persistent
		oifname "eth0" meta l4proto tcp ip6 saddr fd00::/64 snat ip6 to [2001:db8::1]:1024-1100 fully-random
		oifname "eth1" meta l4proto udp masquerade to :40000 comment "single port"
		ip saddr 10.7.0.0/16 masquerade
	}
}
`, "nft", "-f", "-")
	inNS(t, ns, `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 10.1.0.0/16 -p udp -j SNAT --to-source 192.0.2.9-192.0.2.10:3000-3100 --random-fully --persistent
-A POSTROUTING -s 10.2.0.0/16 -p tcp -j MASQUERADE --to-ports 1024-1100 --random
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
COMMIT
`, "iptables-nft-restore")
	inNS(t, ns, `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -s 10.244.0.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE
COMMIT
`, "iptables-legacy-restore")
	inNS(t, ns, `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s fd00:1::/64 -o eth0 -j MASQUERADE --random-fully
-A POSTROUTING -s fd00:2::/64 -p tcp -j SNAT --to-source [2001:db8::7]:5000-5100 --random
COMMIT
`, "ip6tables-nft-restore")

	rs, err := Read(context.Background(), ReadOptions{NS: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read:\n%s", summary(rs))
	type want struct {
		backend  Backend
		family   Family
		chain    string
		pos      int
		nat      string
		owner    Owner
		textPart string
	}
	wants := []want{
		{natrule.Nftables, "inet", "post", 1, "snat to 192.0.2.1-192.0.2.4:2000-2100 random,persistent", Unknown, `oifname "eth0"`},
		{natrule.Nftables, "inet", "post", 2, "snat to [2001:db8::1]:1024-1100 fully-random", Unknown, "ip6 saddr fd00::/64"},
		{natrule.Nftables, "inet", "post", 3, "masquerade to :40000", Unknown, `comment "single port"`},
		{natrule.Nftables, "inet", "post", 4, "masquerade", Unknown, "ip saddr 10.7.0.0/16"},
		{natrule.IptablesNFT, "ip", "POSTROUTING", 2, "masquerade", Docker, "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"},
		{natrule.IptablesNFT, "ip", "POSTROUTING", 3, "snat to 192.0.2.9-192.0.2.10:3000-3100 fully-random,persistent", Unknown, "--random-fully --persistent"},
		{natrule.IptablesNFT, "ip", "POSTROUTING", 4, "masquerade to :1024-1100 random", Unknown, "--to-ports 1024-1100 --random"},
		{natrule.IptablesNFT, "ip", "KUBE-POSTROUTING", 3, "masquerade fully-random", KubeProxy, "kubernetes service traffic requiring SNAT"},
		{natrule.IptablesNFT, "ip6", "POSTROUTING", 1, "masquerade fully-random", Unknown, "-s fd00:1::/64"},
		{natrule.IptablesNFT, "ip6", "POSTROUTING", 2, "snat to [2001:db8::7]:5000-5100 random", Unknown, "[2001:db8::7]:5000-5100"},
		{natrule.IptablesLegacy, "ip", "FLANNEL-POSTRTG", 2, "masquerade fully-random", Flannel, "! -d 224.0.0.0/4"},
		{natrule.IptablesLegacy, "ip", "FLANNEL-POSTRTG", 3, "masquerade", Flannel, "! -s 10.244.0.0/16 -d 10.244.0.0/16"},
	}
	got := map[string]Rule{}
	for _, r := range rs.Rules {
		got[fmt.Sprintf("%s %s %s %d", r.Backend, r.Family, r.Chain, r.Position)] = r
	}
	if len(rs.Rules) != len(wants) {
		t.Errorf("got %d rules, want %d:\n%s", len(rs.Rules), len(wants), summary(rs))
	}
	for _, w := range wants {
		k := fmt.Sprintf("%s %s %s %d", w.backend, w.family, w.chain, w.pos)
		r, ok := got[k]
		if !ok {
			t.Errorf("missing rule %s", k)
			continue
		}
		if r.NAT.String() != w.nat || r.Owner != w.owner || !strings.Contains(r.Text, w.textPart) || !r.FlagsKnown {
			t.Errorf("%s: got nat %q owner %s text %q flags_known %v; want %q %s containing %q", k, r.NAT, r.Owner, r.Text, r.FlagsKnown, w.nat, w.owner, w.textPart)
		}
		if r.Hook != "postrouting" {
			t.Errorf("%s: hook %q, want postrouting", k, r.Hook)
		}
		if r.Backend != natrule.IptablesLegacy && (r.Handle == 0 || r.Raw == nil || !r.Raw.Complete) {
			t.Errorf("%s: handle %d raw %+v: want the netlink rule", k, r.Handle, r.Raw)
		}
	}
	if !rs.MixedBackends() {
		t.Errorf("MixedBackends() = false with legacy and nft rules")
	}
	if rs.Generation == 0 {
		t.Errorf("Generation = 0")
	}
}

// commitOnList is a Runner that, at its first `iptables-nft -S`, lets an
// owner rewrite the iptables-nft rules first: their order changes between
// the netlink dump and the listing.
type commitOnList struct {
	tool.Runner
	ns     *netns.NS
	lists  int
	commit func()
}

func (c *commitOnList) Run(ctx context.Context, cmd tool.Cmd) ([]byte, error) {
	if cmd.Name == "iptables-nft" && slices.Contains(cmd.Args, "-S") {
		if c.lists++; c.lists == 1 {
			c.commit()
		}
	}
	return c.Runner.Run(ctx, cmd)
}

// A commit between the nftables dump and the listing of the iptables-nft
// chains makes Read read both again: no rule gets another rule's line.
func TestReadIptablesNftTextSameGeneration(t *testing.T) {
	ns := labNS(t)
	const a, b = "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE", "-A POSTROUTING -s 10.88.0.0/16 ! -o cni0 -j MASQUERADE"
	load := func(first, second string) {
		inNS(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n-F POSTROUTING\n"+first+"\n"+second+"\nCOMMIT\n", "iptables-nft-restore", "--noflush")
	}
	load(a, b)
	run := &commitOnList{Runner: tool.Exec{NS: ns}, ns: ns, commit: func() { load(b, a) }}
	rs, err := Read(context.Background(), ReadOptions{NS: ns, Runner: run, SkipLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	if run.lists < 2 {
		t.Errorf("the chains were listed %d times: the commit went unnoticed", run.lists)
	}
	// Each line must be on the rule of its handle as the kernel has it now.
	listing := netnstest.Run(t, ns, "", "nft", "-a", "list", "chain", "ip", "nat", "POSTROUTING")
	handleOf := func(saddr string) string {
		for _, l := range strings.Split(listing, "\n") {
			if strings.Contains(l, saddr) {
				return l[strings.LastIndex(l, " ")+1:]
			}
		}
		return "?"
	}
	if len(rs.Rules) != 2 {
		t.Fatalf("%d rules, want 2", len(rs.Rules))
	}
	for _, r := range rs.Rules {
		saddr := "172.17.0.0/16"
		if strings.Contains(r.Text, "10.88.0.0/16") {
			saddr = "10.88.0.0/16"
		}
		if h := fmt.Sprint(r.Location.Handle); h != handleOf(saddr) {
			t.Errorf("line %q is on handle %s; the kernel's rule of %s is handle %s", r.Text, h, saddr, handleOf(saddr))
		}
	}
}

// A line pairs with a rule only with the same NAT action and flags, and a
// pairing that fails anywhere gives no rule a line.
func TestMatchSaveLinesAllOrNothing(t *testing.T) {
	rule := func(pos int, fully bool) Rule {
		return Rule{Location: Location{Backend: natrule.IptablesNFT, Family: natrule.IPv4, Table: "nat", Chain: "POSTROUTING", Position: pos},
			NAT: natrule.Mode{Action: natrule.Masquerade, FullyRandom: fully}, Text: "nft text"}
	}
	rs := &Ruleset{Rules: []Rule{rule(1, false), rule(2, false)}}
	srs := &Ruleset{Rules: []Rule{rule(1, false), rule(2, true)}}
	srs.Rules[0].Text, srs.Rules[1].Text = "line 1", "line 2 --random-fully"
	if err := matchSaveLines(rs, srs, natrule.IPv4, "iptables-nft"); err == nil {
		t.Errorf("a line whose flags differ from its rule's paired")
	}
	for _, r := range rs.Rules {
		if r.Text != "nft text" {
			t.Errorf("rule %d got line %q from a failed pairing", r.Position, r.Text)
		}
	}
}
