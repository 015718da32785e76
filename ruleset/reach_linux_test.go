//go:build linux

package ruleset

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/natrule"
)

// TestReadReachable reads only the chains source NAT can run in: the nat
// base chains at postrouting, and every chain they reach through jumps,
// gotos, anonymous and named verdict maps. Rules in chains no such base
// chain reaches (an orphan chain, prerouting's DNAT chain, a filter chain)
// are not read, and their chains say so (Rules -1).
func TestReadReachable(t *testing.T) {
	ns := labNS(t)
	inNS(t, ns, `table ip t {
	map m {
		type ifname : verdict
		elements = { "eth2" : jump vianamed }
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname vmap { "eth0" : jump viamap, "eth1" : goto viamap2 }
		jump direct
	}
	chain post2 {
		type nat hook postrouting priority 101; policy accept;
		oifname vmap @m
	}
	chain viamap { ip saddr 10.1.0.0/16 masquerade; }
	chain viamap2 { ip saddr 10.2.0.0/16 masquerade fully-random; }
	chain vianamed { snat to 192.0.2.1; }
	chain direct { counter; ip saddr 10.3.0.0/16 masquerade random; }
	chain orphan { masquerade; }
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		jump dnatchain
	}
	chain dnatchain { tcp dport 80 dnat to 10.0.0.1; }
	chain forwarding {
		type filter hook forward priority filter; policy accept;
		jump orphan2
	}
	chain orphan2 { counter; }
}
`, "nft", "-f", "-")
	rs, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs.Rules {
		got = append(got, fmt.Sprintf("%s #%d %s hook=%s", r.Chain, r.Position, r.NAT, r.Hook))
	}
	sort.Strings(got)
	want := []string{
		"direct #2 masquerade random hook=postrouting",
		"viamap #1 masquerade hook=postrouting",
		"viamap2 #1 masquerade fully-random hook=postrouting",
		"vianamed #1 snat to 192.0.2.1 hook=postrouting",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	rules := map[string]int{}
	for _, c := range rs.Chains {
		if c.Backend == natrule.Nftables && c.Table == "t" {
			rules[c.Name] = c.Rules
		}
	}
	wantRules := map[string]int{"post": 2, "post2": 1, "viamap": 1, "viamap2": 1, "vianamed": 1, "direct": 2,
		"orphan": -1, "pre": -1, "dnatchain": -1, "forwarding": -1, "orphan2": -1}
	if fmt.Sprint(rules) != fmt.Sprint(wantRules) {
		t.Errorf("chain rule counts %v, want %v", rules, wantRules)
	}
	if len(rs.Sources) == 0 || rs.Sources[0].Scanned != 8 {
		t.Errorf("sources %+v: want 8 rules scanned (the reachable chains' rules)", rs.Sources)
	}
}
