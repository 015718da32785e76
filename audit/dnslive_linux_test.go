//go:build linux

package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/xtables"
)

// scanLive reads ns's rules as opts say and scans their DNS path as the
// audit does, failing the test on a warning; it returns the path and the
// commands the scan ran.
func scanLive(t *testing.T, ns *netns.NS, opts ruleset.ReadOptions) (*DNSPath, []string) {
	t.Helper()
	ctx := context.Background()
	rs, err := ruleset.Read(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	rec := &tool.Recorder{Runner: tool.Exec{NS: ns}}
	p, warnings := ScanDNSLive(ctx, ns, rec, rs)
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}
	return p, rec.Ran()
}

// TestScanDNSLive finds kube-proxy's DNS service DNAT (nftables mode, its
// chain names) and NodeLocal DNSCache's NOTRACK rules (nftables and
// iptables-nft) by listing only the chains that can hold them — never the
// whole ruleset, which takes seconds on a 100,000-rule node.
func TestScanDNSLive(t *testing.T) {
	ns := netnstest.New(t, "dns")
	netnstest.Run(t, ns, `table ip kube-proxy {
	chain nat-prerouting {
		type nat hook prerouting priority dstnat;
		jump services
	}
	chain services {
		ip daddr 10.96.0.10 udp dport 53 goto service-ULMVA6XW-kube-system/kube-dns/udp/dns
		ip daddr 10.96.0.1 tcp dport 443 goto service-2QRHZV4L-default/kubernetes/tcp/https
	}
	chain service-ULMVA6XW-kube-system/kube-dns/udp/dns {
		numgen random mod 1 0 goto endpoint-5RA2CNSN-kube-system/kube-dns/udp/dns__10.244.0.5/53
	}
	chain endpoint-5RA2CNSN-kube-system/kube-dns/udp/dns__10.244.0.5/53 {
		meta l4proto udp dnat to 10.244.0.5:53
	}
	chain service-2QRHZV4L-default/kubernetes/tcp/https {
		meta l4proto tcp dnat to 192.168.0.2:6443
	}
}
table ip nodelocal {
	chain raw-pre {
		type filter hook prerouting priority raw;
		ip daddr 169.254.20.10 udp dport 53 notrack
	}
}
`, "nft", "-f", "-")
	netnstest.Run(t, ns, "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -j NOTRACK\nCOMMIT\n", "iptables-nft-restore")
	p, ran := scanLive(t, ns, ruleset.ReadOptions{NS: ns})
	if p == nil || len(p.Service) != 1 || !strings.Contains(p.Service[0], "dnat to 10.244.0.5:53") {
		t.Errorf("service rules %q, want the kube-dns endpoint's DNAT", p.Service)
	}
	if p == nil || len(p.NoTrack) != 2 {
		t.Errorf("NOTRACK rules %q, want the nft one and the iptables-nft one", p.NoTrack)
	}
	for _, c := range p.Scanned {
		if strings.Contains(c, "kubernetes/tcp") {
			t.Errorf("read %q: the scan must read only the chains that can hold the DNS path", c)
		}
	}
	for _, c := range ran {
		if strings.HasPrefix(c, "nft ") || strings.HasPrefix(c, "iptables-nft-save") {
			t.Errorf("ran %q: a whole-ruleset dump, or nft (which reads every set of a table first)", c)
		}
	}
}

// kubeDNSLegacy is kube-proxy's cluster-DNS service in iptables-legacy
// (statistic and DNAT included) and NodeLocal DNSCache's NOTRACK in raw.
const kubeDNSLegacy = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]
:KUBE-SEP-IT2ZTR26TO4XFPTO - [0:0]
:KUBE-SEP-YIL6JZP7A3QYXJU2 - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.5:53" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-IT2ZTR26TO4XFPTO
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.6:53" -j KUBE-SEP-YIL6JZP7A3QYXJU2
-A KUBE-SEP-IT2ZTR26TO4XFPTO -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.5:53
-A KUBE-SEP-YIL6JZP7A3QYXJU2 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.6:53
COMMIT
`

const noTrackLegacy = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -j NOTRACK
COMMIT
`

// TestScanDNSLiveLegacy scans an iptables-legacy node whose nat table the
// rule read took through the kernel interface: the nat table is printed
// from the entries read, raw asked of iptables-legacy-save -t raw, and the
// rules found are exactly those a scan of the whole iptables-legacy-save
// finds. A nat rule xtables cannot print sends the nat table to the tool
// too; a namespace without a raw table is not given one; one with a raw
// table and no nat table is read through the tool, raw included.
func TestScanDNSLiveLegacy(t *testing.T) {
	multiport := "-A KUBE-SERVICES -p tcp -m multiport --dports 80,443 -j RETURN\nCOMMIT\n"
	for _, tc := range []struct {
		name, rules      string
		scanned          []string
		service, notrack int
	}{
		{"printed", kubeDNSLegacy + noTrackLegacy, []string{ruleset.DirectSource + " nat", "iptables-legacy-save -t raw"}, 3, 1},
		{"fallback", strings.Replace(kubeDNSLegacy, "COMMIT\n", multiport, 1) + noTrackLegacy, []string{"iptables-legacy-save -t nat", "iptables-legacy-save -t raw"}, 3, 1},
		{"no-raw", kubeDNSLegacy, []string{ruleset.DirectSource + " nat"}, 3, 0},
		{"raw-only", noTrackLegacy, []string{"iptables-legacy-save"}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.New(t, "dnsleg")
			netnstest.Run(t, ns, tc.rules, "iptables-legacy-restore")
			var want DNSPath
			ScanDNS(&want, "save", netnstest.Run(t, ns, "", "iptables-legacy-save"))
			p, ran := scanLive(t, ns, ruleset.ReadOptions{NS: ns, LegacyDirect: true})
			if p == nil {
				t.Fatal("nothing scanned")
			}
			// As the audit reads: the nat table's candidate lines kept
			// at read time, the same path found.
			if kept, _ := scanLive(t, ns, ruleset.ReadOptions{NS: ns, LegacyDirect: true, LegacyKeep: dnsCandidate}); kept == nil || fmt.Sprint(*kept) != fmt.Sprint(*p) {
				t.Errorf("kept at read time: %+v, want %+v", kept, *p)
			}
			if got := strings.Join(p.Scanned, ", "); got != strings.Join(tc.scanned, ", ") {
				t.Errorf("scanned %s, want %s", got, strings.Join(tc.scanned, ", "))
			}
			if len(want.Service) != tc.service || strings.Join(p.Service, "\n") != strings.Join(want.Service, "\n") {
				t.Errorf("service rules\n%s\nthe whole save's (want %d)\n%s", strings.Join(p.Service, "\n"), tc.service, strings.Join(want.Service, "\n"))
			}
			if len(want.NoTrack) != tc.notrack || strings.Join(p.NoTrack, "\n") != strings.Join(want.NoTrack, "\n") {
				t.Errorf("NOTRACK rules %q, the whole save's %q (want %d)", p.NoTrack, want.NoTrack, tc.notrack)
			}
			for _, c := range ran {
				if c == "iptables-legacy-save" && tc.name != "raw-only" {
					t.Errorf("ran %q: the whole save", c)
				}
			}
			if raw, err := xtables.HasTable(ns, xtables.IPv4, "raw"); err != nil || raw != strings.Contains(tc.rules, "*raw") {
				t.Errorf("raw table after the scan: %v, %v", raw, err)
			}
		})
	}
}

// TestScanDNSLiveLegacy6 is TestScanDNSLiveLegacy's printed case for
// ip6tables-legacy: the IPv6 nat table printed from the entries the rule
// read took, raw asked of ip6tables-legacy-save -t raw, the same rules
// found as in the whole ip6tables-legacy-save.
func TestScanDNSLiveLegacy6(t *testing.T) {
	v6 := strings.NewReplacer("10.96.0.10/32", "fd00:96::a/128", "10.244.0.5:53", "[fd00:244::5]:53", "10.244.0.6:53", "[fd00:244::6]:53",
		"169.254.20.10/32", "fd00:a9fe::a/128")
	ns := netnstest.New(t, "dnsleg6")
	netnstest.Run(t, ns, v6.Replace(kubeDNSLegacy+noTrackLegacy), "ip6tables-legacy-restore")
	var want DNSPath
	ScanDNS(&want, "save", netnstest.Run(t, ns, "", "ip6tables-legacy-save"))
	p, _ := scanLive(t, ns, ruleset.ReadOptions{NS: ns, LegacyDirect: true})
	if p == nil {
		t.Fatal("nothing scanned")
	}
	if got, wantScanned := strings.Join(p.Scanned, ", "), ruleset.DirectSource6+" nat, ip6tables-legacy-save -t raw"; got != wantScanned {
		t.Errorf("scanned %s, want %s", got, wantScanned)
	}
	if len(want.Service) != 3 || strings.Join(p.Service, "\n") != strings.Join(want.Service, "\n") {
		t.Errorf("service rules\n%s\nthe whole save's (want 3)\n%s", strings.Join(p.Service, "\n"), strings.Join(want.Service, "\n"))
	}
	if len(want.NoTrack) != 1 || strings.Join(p.NoTrack, "\n") != strings.Join(want.NoTrack, "\n") {
		t.Errorf("NOTRACK rules %q, the whole save's %q (want 1)", p.NoTrack, want.NoTrack)
	}
}

// TestScanDNSLiveWithoutLegacyTools scans a node whose iptables-legacy
// rules are readable only through the kernel interface (no save tool
// installed): the nat table's DNS service rules are found, and the raw
// table, which only the tool can print, is named in a warning instead of
// being passed over in silence.
func TestScanDNSLiveWithoutLegacyTools(t *testing.T) {
	ns := netnstest.New(t, "dnsleg")
	netnstest.Run(t, ns, kubeDNSLegacy+noTrackLegacy, "iptables-legacy-restore")
	run := tool.Without{Runner: tool.Exec{NS: ns}, Hidden: func(name string) bool { return slices.Contains(natrule.LegacyToolNames(), name) }}
	ctx := context.Background()
	rs, err := ruleset.Read(ctx, ruleset.ReadOptions{NS: ns, LegacyDirect: true, Runner: run})
	if err != nil {
		t.Fatal(err)
	}
	p, warnings := ScanDNSLive(ctx, ns, run, rs)
	if p == nil || len(p.Service) != 3 {
		t.Fatalf("service rules %v, want kube-dns's 3", p)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "the raw table is not read: iptables-legacy-save is not installed") {
		t.Errorf("warnings %q, want one naming the raw table and the missing tool", warnings)
	}
}
