package ruleset

import (
	"context"
	"slices"
	"testing"

	"github.com/snatrace/snatrace/netns/netnstest"
)

// TestDumpsAgreeWithLive writes rule shapes that once broke a dump parser
// with the real nft, and checks that `nft list ruleset` and `nft -j list
// ruleset`, read from the dump, give the source-NAT rules the live read
// gives: a filter chain matching the conntrack status flag "snat" (not a
// statement), snat to an address prefix (a range to the kernel), and
// chains reached through inline and named verdict maps (their hook).
func TestDumpsAgreeWithLive(t *testing.T) {
	ns := labNS(t)
	inNS(t, ns, `table ip t {
	chain fwdc {
		type filter hook forward priority filter; policy accept;
		ct status snat counter accept
		ct status { dnat, snat } accept
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" snat to 192.168.1.1/30 persistent
		oifname "eth1" masquerade random
	}
}
table inet i {
	map m {
		type ifname : verdict
		elements = { "eth4" : jump named }
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth2" snat ip to 10.9.0.0/31 fully-random
		oifname vmap { "eth3" : jump inline }
		oifname vmap @m
	}
	chain inline {
		masquerade
	}
	chain named {
		masquerade persistent
	}
}
`, "nft", "-f", "-")
	live, err := Read(context.Background(), ReadOptions{NS: ns, SkipLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	want := modes(live)
	if len(want) != 5 {
		t.Fatalf("live read: %v, want 5 source-NAT rules", want)
	}
	for _, d := range []struct {
		format Format
		args   []string
	}{
		{FormatNft, []string{"list", "ruleset"}},
		{FormatNftJSON, []string{"-j", "list", "ruleset"}},
	} {
		dump := netnstest.Run(t, ns, "", "nft", d.args...)
		rs, err := Parse(dump, "dump", d.format)
		if err != nil {
			t.Errorf("%s: %v", d.format, err)
			continue
		}
		if got := modes(rs); !slices.Equal(got, want) {
			t.Errorf("%s: %v, live %v", d.format, got, want)
		}
	}
}

// modes lists each source-NAT rule as "family table chain (hook): mode".
func modes(rs *Ruleset) []string {
	var out []string
	for _, r := range rs.Rules {
		out = append(out, string(r.Family)+" "+r.Table+" "+r.Chain+" ("+r.Hook+"): "+r.NAT.String())
	}
	return out
}
