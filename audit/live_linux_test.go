//go:build linux

package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/tsoffset"
)

// TestAuditLiveNamespace is `snatrace audit --netns` end to end: rules
// installed with the real iptables-nft, iptables-legacy and nft in a fresh
// namespace are read, attributed and judged, and the namespace's own
// conntrack counters are sampled.
func TestAuditLiveNamespace(t *testing.T) {
	ns := netnstest.New(t, "audit")
	load := func(stdin string, args ...string) {
		t.Helper()
		netnstest.Run(t, ns, stdin, args[0], args[1:]...)
	}
	load(`*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
COMMIT
`, "iptables-nft-restore")
	load(`*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:AWS-SNAT-CHAIN-0 - [0:0]
-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0
-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -j SNAT --to-source 10.0.12.34 --random
COMMIT
`, "iptables-legacy-restore")
	load(`table ip lab {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth9" meta l4proto udp masquerade to :40000 fully-random
	}
}
`, "nft", "-f", "-")

	ctx := context.Background()
	rs, err := ruleset.Read(ctx, ruleset.ReadOptions{NS: ns})
	if err != nil {
		t.Fatal(err)
	}
	slept := time.Duration(0)
	ct, err := ReadConntrack(ctx, ns, 2*time.Second, func(_ context.Context, d time.Duration) error { slept += d; return nil })
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(Input{Rules: rs, Kernel: "6.18.0", Iptables: "1.8.9", Conntrack: ct})

	want := map[string]string{ // rule text part -> "severity kind" of its finding
		"! -o docker0 -j MASQUERADE":      "high no-fully-random",
		"--to-source 10.0.12.34 --random": "low random-only",
		"masquerade to :40000":            "high single-port",
	}
	got := map[string]string{}
	for _, f := range rep.Findings {
		for part := range want {
			if strings.Contains(f.Rule, part) {
				got[part] = f.Severity.String() + " " + string(f.Kind)
			}
		}
	}
	for part, w := range want {
		if got[part] != w {
			t.Errorf("rule %q: finding %q, want %q", part, got[part], w)
		}
	}
	owners := map[ruleset.Owner]int{}
	for _, r := range rep.Rules {
		owners[r.Owner]++
	}
	if owners[ruleset.Docker] != 1 || owners[ruleset.KubeProxy] != 1 || owners[ruleset.AWSVPCCNI] != 1 || owners[ruleset.Unknown] != 1 {
		t.Errorf("owners %v, want one each of docker, kube-proxy, aws-vpc-cni, unknown", owners)
	}
	if !rep.HasFindings(Low) {
		t.Error("HasFindings(Low) = false")
	}
	mixed := false
	for _, f := range rep.Findings {
		mixed = mixed || f.Kind == KindMixedBackends
	}
	if !mixed {
		t.Error("no mixed-backends finding with iptables-legacy and iptables-nft rules")
	}
	if c := rep.Conntrack; c == nil || c.IntervalSeconds < 2 || len(c.CPUs) == 0 || c.Source != "netlink" || slept != 2*time.Second {
		t.Errorf("conntrack view %+v (slept %v): want a 2 s netlink sample per CPU", c, slept)
	}
}

// TestLiveAsksBesideTheRead: what Live asks beside the rules' read (the
// iptables version, the timestamp probe) is in its Input, and overrides
// win over both.
func TestLiveAsksBesideTheRead(t *testing.T) {
	ns := netnstest.New(t, "alive")
	ctx := context.Background()
	in, err := Live(ctx, LiveOptions{NS: ns})
	if err != nil {
		t.Fatal(err)
	}
	if want := ruleset.IptablesVersion(ctx, tool.Exec{NS: ns}, "iptables"); in.Iptables != want || want == "" {
		t.Errorf("iptables version %q, want %q", in.Iptables, want)
	}
	if in.TSOffsets == nil || !strings.HasPrefix(in.TSOffsets.Reason, "probed: ") {
		t.Errorf("timestamp offsets %+v, want probed", in.TSOffsets)
	}
	in, err = Live(ctx, LiveOptions{NS: ns, Kernel: "5.4.0", Iptables: "1.6.1"})
	if err != nil {
		t.Fatal(err)
	}
	byVersion := tsoffset.ByVersion("5.4.0")
	if in.Iptables != "1.6.1" || in.TSOffsets == nil || in.TSOffsets.Kind != byVersion.Kind || in.TSOffsets.Reason != byVersion.Reason {
		t.Errorf("with overrides: iptables %q, offsets %+v; want 1.6.1 and %+v", in.Iptables, in.TSOffsets, byVersion)
	}
}
