package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/netstat"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tsoffset"
)

func TestPAWSFindings(t *testing.T) {
	rs, err := ruleset.ParseIptablesSave(`*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE --random-fully
-A POSTROUTING -s 10.245.0.0/16 -j MASQUERADE --to-ports 20000-20015
-A POSTROUTING -s 10.246.0.0/16 -j MASQUERADE
COMMIT
`, "t.iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	perPort := &tsoffset.Detection{Kind: tsoffset.PerPort, Reason: "probed"}
	rising := PAWSFrom(netstat.Counters{"TcpExt": {"PAWSTimewait": 10}}, netstat.Counters{"TcpExt": {"PAWSTimewait": 17}}, 5*time.Second)
	for _, tc := range []struct {
		name  string
		ts    *tsoffset.Detection
		ev    *PAWSEvidence
		kinds map[Kind]int
		sev   Severity
	}{
		{"per-port, no evidence: the two remapping rules, info", perPort, nil, map[Kind]int{KindPAWSRemap: 2}, Info},
		{"per-port, PAWS rising here: medium", perPort, rising, map[Kind]int{KindPAWSRemap: 2}, Medium},
		{"per-address: nothing", &tsoffset.Detection{Kind: tsoffset.PerAddress}, rising, nil, Info},
		{"unknown: one host-wide info", &tsoffset.Detection{Kind: tsoffset.Unknown}, nil, map[Kind]int{KindTSOffsetsUnknown: 1}, Info},
		{"not judged", nil, nil, nil, Info},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Run(Input{Rules: rs, Kernel: "6.18.44", TSOffsets: tc.ts, PAWS: tc.ev})
			got := map[Kind]int{}
			for _, f := range rep.Findings {
				if f.Kind != KindPAWSRemap && f.Kind != KindTSOffsetsUnknown {
					continue
				}
				got[f.Kind]++
				if f.Severity != tc.sev {
					t.Errorf("%s: severity %s, want %s", f.Kind, f.Severity, tc.sev)
				}
				if f.Kind == KindPAWSRemap && strings.Contains(f.Rule, "-s 10.246.0.0/16") {
					t.Errorf("plain masquerade flagged: %s", f.Rule)
				}
			}
			if len(got) != len(tc.kinds) {
				t.Fatalf("findings %v, want %v", got, tc.kinds)
			}
			for k, n := range tc.kinds {
				if got[k] != n {
					t.Errorf("%s: %d findings, want %d", k, got[k], n)
				}
			}
		})
	}
	if s := rising.String(); !strings.Contains(s, "PAWSTimewait: 17") || !strings.Contains(s, "+7 in 5s") {
		t.Errorf("evidence %q", s)
	}
	old := PAWSFrom(nil, netstat.Counters{"TcpExt": {"PAWSEstab": 3}}, 0)
	if old.Counter != "PAWSEstab" || old.Total != 3 || old.Rise != 0 {
		t.Errorf("a kernel before 6.16: %+v", old)
	}
}
