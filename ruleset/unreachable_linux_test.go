//go:build linux

package ruleset

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/netns/netnstest"
)

// TestUnreachableInDumps loads, with the real iptables and nft, a nat table
// whose masquerade rules sit in a chain reached from POSTROUTING (by a
// jump, and for nftables by a verdict map) and in a chain nothing reaches,
// dumps it every way snatrace reads, and checks that exactly the second is
// Unreachable; a dump of single chains (iptables -S CHAIN, nft list chain)
// does not show the whole table and marks nothing.
func TestUnreachableInDumps(t *testing.T) {
	ns := netnstest.New(t, "unr")
	netnstest.Run(t, ns, `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:USED - [0:0]
:ORPHAN - [0:0]
-A POSTROUTING -j USED
-A USED -s 10.1.0.0/16 -j MASQUERADE
-A ORPHAN -s 10.2.0.0/16 -j MASQUERADE
COMMIT
`, "iptables-legacy-restore")
	netnstest.Run(t, ns, `table ip t {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname vmap { "eth9" : jump viamap }
		jump used
	}
	chain used {
		ip saddr 10.3.0.0/16 masquerade
	}
	chain viamap {
		ip saddr 10.4.0.0/16 masquerade
	}
	chain orphan {
		ip saddr 10.5.0.0/16 masquerade
	}
}
`, "nft", "-f", "-")
	dumps := map[string]string{
		"iptables-save":  netnstest.Run(t, ns, "", "iptables-legacy-save", "-t", "nat"),
		"iptables -S":    netnstest.Run(t, ns, "", "iptables-legacy", "-t", "nat", "-S"),
		"iptables -nvL":  netnstest.Run(t, ns, "", "iptables-legacy", "-t", "nat", "-nvL"),
		"iptables -L -n": netnstest.Run(t, ns, "", "iptables-legacy", "-t", "nat", "-L", "-n"),
		"nft":            netnstest.Run(t, ns, "", "nft", "list", "table", "ip", "t"),
		"nft -a":         netnstest.Run(t, ns, "", "nft", "-a", "list", "table", "ip", "t"),
		"nft -j":         netnstest.Run(t, ns, "", "nft", "-j", "list", "table", "ip", "t"),
	}
	const iptWant, nftWant = "ORPHAN:true USED:false", "orphan:true used:false viamap:false"
	want := map[string]string{
		"iptables-save": iptWant, "iptables -S": iptWant, "iptables -nvL": iptWant, "iptables -L -n": iptWant,
		"nft": nftWant, "nft -a": nftWant, "nft -j": nftWant,
	}
	for name, dump := range dumps {
		if got := unreachableView(t, name, dump); got != want[name] {
			t.Errorf("%s: %s, want %s\n%s", name, got, want[name], dump)
		}
	}
	partial := map[string]string{
		"iptables -S CHAIN": netnstest.Run(t, ns, "", "iptables-legacy", "-t", "nat", "-S", "POSTROUTING") +
			netnstest.Run(t, ns, "", "iptables-legacy", "-t", "nat", "-S", "ORPHAN"),
		"nft list chain": netnstest.Run(t, ns, "", "nft", "list", "chain", "ip", "t", "orphan"),
	}
	for name, dump := range partial {
		if got := unreachableView(t, name, dump); strings.Contains(got, "true") {
			t.Errorf("%s, a dump of single chains: %s, want nothing unreachable\n%s", name, got, dump)
		}
	}
}

// unreachableView parses dump and renders each NAT rule's chain and
// Unreachable, sorted.
func unreachableView(t *testing.T, name, dump string) string {
	t.Helper()
	rs, err := Parse(dump, name, FormatAuto)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	for _, r := range rs.Rules {
		out = append(out, fmt.Sprintf("%s:%v", r.Chain, r.Unreachable))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
