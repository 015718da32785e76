//go:build linux

package audit

import (
	"context"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
)

// recorder runs commands and remembers them.
type recorder struct {
	tool.Runner
	ran []string
}

func (r *recorder) Run(ctx context.Context, c tool.Cmd) ([]byte, error) {
	r.ran = append(r.ran, c.String())
	return r.Runner.Run(ctx, c)
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
	ctx := context.Background()
	rs, err := ruleset.Read(ctx, ruleset.ReadOptions{NS: ns})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Runner: tool.Exec{NS: ns}}
	p, warnings := ScanDNSLive(ctx, ns, rec, rs)
	if len(warnings) > 0 {
		t.Errorf("warnings: %q", warnings)
	}
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
	for _, c := range rec.ran {
		if strings.HasPrefix(c, "nft ") || strings.HasPrefix(c, "iptables-nft-save") {
			t.Errorf("ran %q: a whole-ruleset dump, or nft (which reads every set of a table first)", c)
		}
	}
}
