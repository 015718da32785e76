package audit

import (
	"os"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/ruleset"
)

// A kube-proxy (iptables mode) dump from a kind cluster: the kube-dns
// endpoint DNAT to :53 is a service rule; NodeLocal DNSCache's raw-table
// NOTRACK rules (as its manifest installs them) exempt DNS.
func TestScanDNS(t *testing.T) {
	b, err := os.ReadFile("../ruleset/testdata/corpus/kube-proxy-2.S")
	if err != nil {
		t.Fatal(err)
	}
	var p DNSPath
	ScanDNS(&p, "kube-proxy-2.S", string(b))
	if len(p.Service) != 1 || !strings.Contains(p.Service[0], "--to-destination 10.244.0.3:53") || len(p.NoTrack) != 0 {
		t.Errorf("kube-proxy dump: service %q notrack %q", p.Service, p.NoTrack)
	}
	nodelocal := `*raw
-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -j NOTRACK
-A OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -j NOTRACK
-A PREROUTING -d 169.254.20.10/32 -p tcp -m tcp --dport 8080 -j NOTRACK
COMMIT
*nat
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A POSTROUTING -d 10.96.0.10/32 -p udp --dport 53 -j ACCEPT
COMMIT
`
	p = DNSPath{}
	ScanDNS(&p, "nodelocal", nodelocal)
	if len(p.NoTrack) != 2 || len(p.Service) != 1 || !strings.Contains(p.Service[0], "KUBE-SVC-") {
		t.Errorf("nodelocal dump: service %q notrack %q", p.Service, p.NoTrack)
	}
	// kube-proxy's nftables mode and an nft NodeLocal DNSCache.
	nft := `table ip kube-proxy {
	chain endpoint-5OJB2KTY-kube-system/kube-dns/udp/dns__10.244.0.3/53 {
		ip saddr 10.244.0.3 jump mark-for-masquerade
		meta l4proto udp dnat to 10.244.0.3:53
	}
}
table ip nodelocal {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		ip daddr 169.254.20.10 udp dport 53 notrack
	}
}`
	p = DNSPath{}
	ScanDNS(&p, "nft", nft)
	if len(p.Service) != 1 || len(p.NoTrack) != 1 {
		t.Errorf("nft: service %q notrack %q", p.Service, p.NoTrack)
	}
}

func TestDNSFindings(t *testing.T) {
	rs, err := ruleset.Parse("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE\nCOMMIT\n", "dump", ruleset.FormatIptablesSave)
	if err != nil {
		t.Fatal(err)
	}
	svc := &DNSPath{Service: []string{"-A KUBE-SEP-X -p udp -j DNAT --to-destination 10.244.0.3:53"}}
	kinds := func(rep *Report) map[Kind]Severity {
		m := map[Kind]Severity{}
		for _, f := range rep.Findings {
			if strings.HasPrefix(string(f.Kind), "dns-") {
				m[f.Kind] = f.Severity
				if f.Kind != KindDNSNoTrack && !strings.Contains(f.Remedy, "NodeLocal DNSCache") {
					t.Errorf("%s: remedy %q", f.Kind, f.Remedy)
				}
			}
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		kernel string
		dns    *DNSPath
		want   map[Kind]Severity
	}{
		{"5.4: parallel queries to the service dropped", "5.4.0", svc, map[Kind]Severity{KindDNSConntrack: High, KindDNSSNAT: Medium}},
		{"6.1: resolved, cross-pod still not", "6.1.0-13-amd64", svc, map[Kind]Severity{KindDNSConntrack: Medium, KindDNSSNAT: Medium}},
		{"nodelocal", "6.1.0", &DNSPath{Service: svc.Service, NoTrack: []string{"-A PREROUTING -d 169.254.20.10/32 -p udp --dport 53 -j NOTRACK"}}, map[Kind]Severity{KindDNSNoTrack: Info}},
		{"not scanned", "6.1.0", nil, map[Kind]Severity{}},
	} {
		rep := Run(Input{Rules: rs, Kernel: tc.kernel, DNS: tc.dns})
		got := kinds(rep)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

// FuzzScanDNS feeds ScanDNS arbitrary dumps: never more rules than lines,
// and the cheap word filter never drops a line the port-53 expression
// matches.
func FuzzScanDNS(f *testing.F) {
	f.Add("*raw\n-A PREROUTING -p udp --dport 53 -j NOTRACK\n")
	f.Add("meta l4proto udp dnat to 10.0.0.1:53")
	f.Add("-A KUBE-SEP-D67QVZ6M753BDNAT -s 10.244.0.53/32 -j DNAT --to-destination 10.244.0.53:8053")
	f.Add("udp dport53 accept")
	f.Fuzz(func(t *testing.T, s string) {
		if dport53.MatchString(s) && !mayName53(s) {
			t.Fatalf("dport53 matches %q, mayName53 passes it by", s)
		}
		var p DNSPath
		ScanDNS(&p, "fuzz", s)
		if len(p.Service)+len(p.NoTrack) > strings.Count(s, "\n")+1 {
			t.Fatalf("more rules than lines: %+v", p)
		}
	})
}

// TestMayName53 checks the cheap filter on the lines a kube-proxy table
// is made of: a "53" inside a chain hash or an address is passed by, a
// port 53 in any form ScanDNS recognises is not.
func TestMayName53(t *testing.T) {
	for line, want := range map[string]bool{
		"-A KUBE-SVC-D67QVZ6M753BDNAT -j KUBE-SEP-53XQ":                   false,
		"-A KUBE-SEP-X -s 10.244.0.53/32 -j KUBE-MARK-MASQ":               false,
		"-j DNAT --to-destination 10.244.0.5:8053":                        false,
		"-A KUBE-SERVICES -p udp -m udp --dport 53 -j KUBE-SVC-TCOU7J":    true,
		"-j DNAT --to-destination 10.244.0.5:53":                          true,
		"udp dport53 accept":                                              true,
		"ip daddr . udp dport { 10.96.0.10 . 53 } notrack":                true,
		"-A PREROUTING -p udp -m udp --sport 53\t-j NOTRACK":              true,
		"-A KUBE-SERVICES -d 10.96.0.53/32 -p tcp -m tcp --dport 80 -j X": false,
	} {
		if got := mayName53(line); got != want {
			t.Errorf("mayName53(%q) = %v, want %v", line, got, want)
		}
		if dport53.MatchString(line) && !mayName53(line) {
			t.Errorf("%q: dport53 matches, the filter drops it", line)
		}
	}
}
