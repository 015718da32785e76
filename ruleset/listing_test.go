package ruleset

import (
	"fmt"
	"strings"
	"testing"
)

// seedListing is the kind of listing this project's seed report pasted:
// iptables 1.6/1.8 before 1.8.8 prints "all" and rounds the counters.
const seedListing = `Chain PREROUTING (policy ACCEPT 1204K packets, 72M bytes)
 pkts bytes target     prot opt in     out     source               destination
  11M  661M KUBE-SERVICES  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service portals */

Chain POSTROUTING (policy ACCEPT 873K packets, 52M bytes)
 pkts bytes target     prot opt in     out     source               destination
  18M 1093M KUBE-POSTROUTING  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes postrouting rules */
 4210  253K MASQUERADE  all  --  *      !docker0  172.17.0.0/16        0.0.0.0/0
    0     0 SNAT       tcp  --  *      eth1    10.9.0.0/24          0.0.0.0/0            tcp dpt:443 to:192.0.2.10:40000-40100 random persistent

Chain KUBE-POSTROUTING (1 references)
 pkts bytes target     prot opt in     out     source               destination
 873K   52M RETURN     all  --  *      *       0.0.0.0/0            0.0.0.0/0            mark match ! 0x4000/0x4000
    0     0 MARK       all  --  *      *       0.0.0.0/0            0.0.0.0/0            MARK xor 0x4000
    0     0 MASQUERADE  all  --  *      *       0.0.0.0/0            0.0.0.0/0            /* kubernetes service traffic requiring SNAT */ random-fully

Chain KUBE-SERVICES (1 references)
 pkts bytes target     prot opt in     out     source               destination
`

func TestParseIptablesListing(t *testing.T) {
	rs, err := Parse(seedListing, "seed.txt", FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	want := "ip POSTROUTING #2 owner=docker nat=\"masquerade\" comment=\"\"\n" +
		"ip POSTROUTING #3 owner=unknown nat=\"snat to 192.0.2.10:40000-40100 random,persistent\" comment=\"\"\n" +
		"ip KUBE-POSTROUTING #3 owner=kube-proxy nat=\"masquerade fully-random\" comment=\"kubernetes service traffic requiring SNAT\"\n"
	if got := natView(rs); got != want {
		t.Errorf("read\n%s\nwant\n%s", got, want)
	}
	if rs.Sources[0].Format != string(FormatIptablesList) || rs.Rules[0].Text != "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" || rs.Rules[0].Line != 8 {
		t.Errorf("source %+v; first rule %q at line %d", rs.Sources[0], rs.Rules[0].Text, rs.Rules[0].Line)
	}
	if !strings.Contains(rs.Rules[1].Match, "--dport 443") || len(rs.Warnings) != 0 {
		t.Errorf("SNAT match %q, warnings %q", rs.Rules[1].Match, rs.Warnings)
	}
}

// Untranslated matches are kept, in one listing match, not dropped.
func TestParseIptablesListingUnknownMatch(t *testing.T) {
	l := "Chain POSTROUTING (policy ACCEPT)\ntarget prot opt source destination\n" +
		"MASQUERADE  all  --  10.0.0.0/8  0.0.0.0/0  PHYSDEV match --physdev-is-bridged random-fully\n"
	rs, err := Parse(l, "x", FormatIptablesList)
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.Rules[0]; r.Match != `-s 10.0.0.0/8 -m listing --text "PHYSDEV match --physdev-is-bridged"` || !r.NAT.FullyRandom {
		t.Errorf("match %q, mode %s", r.Match, r.NAT)
	}
	if len(rs.Warnings) != 1 || !strings.Contains(rs.Warnings[0], "without -v") {
		t.Errorf("warnings %q", rs.Warnings)
	}
}

func TestParseIptablesListingErrors(t *testing.T) {
	tests := []struct{ name, in, msg string }{
		{"filter table", "Chain INPUT (policy ACCEPT)\ntarget prot opt source destination\n\nChain FORWARD (policy DROP)\n\nChain OUTPUT (policy ACCEPT)\n",
			"this is a listing of the filter table (chains INPUT, FORWARD, OUTPUT), which holds no source NAT: list the nat table (iptables -t nat -L -n -v)"},
		{"mangle table", "Chain PREROUTING (policy ACCEPT)\nChain INPUT (policy ACCEPT)\nChain FORWARD (policy ACCEPT)\nChain OUTPUT (policy ACCEPT)\nChain POSTROUTING (policy ACCEPT)\n",
			"this is a listing of the mangle table"},
		{"cut in the middle", "Chain POSTROUTING (policy ACCEPT 0 packets, 0 bytes)\n pkts bytes target     prot opt in     out     source               destination\n    0     0 MASQUERADE  all  --  *      !docker0",
			"dump.txt:3: a rule line needs at least 8 columns, has 7 (a listing cut in the middle?)"},
		{"bad chain line", "Chain POSTROUTING policy ACCEPT\n", "unrecognised dump"},
		{"rule before chain", "Chain POSTROUTING (policy ACCEPT)\n", ""},
	}
	for _, tt := range tests[:4] {
		_, err := Parse(tt.in, "dump.txt", FormatAuto)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.msg)
		}
	}
	_, err := ParseIptablesListing(" 0 0 MASQUERADE all -- * * 0.0.0.0/0 0.0.0.0/0\nChain POSTROUTING (policy ACCEPT)\n", "x")
	if err == nil || !strings.Contains(err.Error(), "before the first \"Chain\" line") {
		t.Errorf("rule before chain: %v", err)
	}
}

func FuzzParseIptablesListing(f *testing.F) {
	f.Add(seedListing)
	f.Add("Chain POSTROUTING (policy ACCEPT)\nnum target prot opt source destination\n1 MASQUERADE all -- ::/0 !fe80::/10 /* a */ random\n")
	f.Fuzz(func(t *testing.T, data string) {
		rs, err := ParseIptablesListing(data, "fuzz")
		if err != nil {
			return
		}
		chains := map[string]bool{}
		for _, c := range rs.Chains {
			chains[c.Name] = true
		}
		for _, r := range rs.Rules {
			if !chains[r.Chain] || r.Position < 1 || r.Table != "nat" {
				t.Errorf("rule %+v outside the chains read", r.Location)
			}
		}
	})
}

// natView is what a listing must agree on with the dump: each NAT rule's
// place, family, owner, mode and comment.
func natView(rs *Ruleset) string {
	var b strings.Builder
	for _, r := range rs.Rules {
		fmt.Fprintf(&b, "%s %s #%d owner=%s nat=%q comment=%q\n", r.Family, r.Chain, r.Position, r.Owner, r.NAT.String(), r.Comment)
	}
	return b.String()
}
