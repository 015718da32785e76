package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goldenfile "github.com/snatrace/snatrace/internal/golden"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
)

func rule(t *testing.T, owner ruleset.Owner, mode string) ruleset.Rule {
	t.Helper()
	m, err := natrule.ParseMode(mode)
	if err != nil {
		t.Fatal(err)
	}
	return ruleset.Rule{Location: ruleset.Location{Backend: natrule.IptablesLegacy, Family: "ip", Table: "nat", Chain: "POSTROUTING", Position: 1},
		NAT: m, FlagsKnown: true, Owner: owner, Text: "-A POSTROUTING " + mode}
}

// kinds returns "severity kind" of every finding, in report order.
func kinds(rep *Report) []string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, f.Severity.String()+" "+string(f.Kind))
	}
	return out
}

func TestRuleFindings(t *testing.T) {
	tests := []struct {
		name   string
		owner  ruleset.Owner
		mode   string
		kernel string
		want   []string
	}{
		{"fully-random is clean", ruleset.KubeProxy, "masquerade fully-random", "6.1.0", nil},
		{"plain pod masquerade", ruleset.Docker, "masquerade", "6.1.0", []string{"high no-fully-random"}},
		{"plain host masquerade", ruleset.Unknown, "masquerade", "6.1.0", []string{"medium no-fully-random"}},
		{"plain on the rover era", ruleset.Unknown, "masquerade", "4.19.0-25-amd64", []string{"high no-fully-random", "high kernel-port-rover"}},
		{"random on modern kernel", ruleset.AWSVPCCNI, "snat to 10.0.0.1 random", "5.15.0", []string{"low random-only"}},
		{"random on old kernel", ruleset.AWSVPCCNI, "snat to 10.0.0.1 random", "4.14.1", []string{"high random-only", "high kernel-port-rover"}},
		{"random, kernel unknown", ruleset.AWSVPCCNI, "snat to 10.0.0.1 random", "", []string{"medium random-only"}},
		{"single port", ruleset.Unknown, "snat to 192.0.2.1:40000 fully-random", "6.1.0", []string{"high single-port"}},
		{"narrow range", ruleset.Libvirt, "masquerade to :1024-1100 fully-random", "6.1.0", []string{"medium narrow-port-range"}},
		{"tiny range", ruleset.Libvirt, "masquerade to :1024-1030 fully-random", "6.1.0", []string{"high narrow-port-range"}},
		{"wide range", ruleset.Libvirt, "masquerade to :1024-65535 fully-random", "6.1.0", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := &ruleset.Ruleset{Rules: []ruleset.Rule{rule(t, tt.owner, tt.mode)}}
			rep := Run(Input{Rules: rs, Kernel: tt.kernel})
			if got := kinds(rep); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("findings %q, want %q", got, tt.want)
			}
			for _, f := range rep.Findings {
				if f.RuleIndex == 0 && (f.Remedy == "" || f.Owner != tt.owner || f.Rule == "") {
					t.Errorf("finding %+v lacks its rule, owner or remedy", f)
				}
			}
			if rep.HasFindings(Low) != (len(tt.want) > 0) {
				t.Errorf("HasFindings(Low) = %v with findings %q", rep.HasFindings(Low), tt.want)
			}
		})
	}
}

// TestUnreachableRule audits a dump whose second masquerade sits in a
// chain nothing jumps to: that rule gets one info finding and no other,
// even on a kernel where plain masquerade races the most, and the exporter
// does not count it among the rules.
func TestUnreachableRule(t *testing.T) {
	rs, err := ruleset.Parse("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:ORPHAN - [0:0]\n"+
		"-A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE\n-A ORPHAN -s 10.2.0.0/16 -j MASQUERADE\nCOMMIT\n", "dump", ruleset.FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(Input{Rules: rs, Kernel: "4.19.0"})
	var orphan []string
	for _, f := range rep.Findings {
		if f.RuleIndex == 1 {
			orphan = append(orphan, f.Severity.String()+" "+string(f.Kind))
		}
	}
	if strings.Join(orphan, ",") != "info unreachable" || !rep.Rules[1].Unreachable || rep.Rules[0].Unreachable {
		t.Errorf("findings of the unreachable rule %q (rules %+v), want only \"info unreachable\"", orphan, rep.Rules)
	}
	if !strings.Contains(rep.Findings[len(rep.Findings)-1].Remedy, "no NAT hook reaches chain ORPHAN") {
		t.Errorf("remedy %q", rep.Findings[len(rep.Findings)-1].Remedy)
	}
}

func TestRemedyPerOwner(t *testing.T) {
	for _, o := range ruleset.Owners() {
		r := ruleset.Rule{Owner: o}
		got := Remedy(&r, KindNoFullyRandom)
		if got == "" || (o != ruleset.Unknown && got == ownerRemedies[ruleset.Unknown]) {
			t.Errorf("owner %s has no remedy of its own: %q", o, got)
		}
	}
	want := map[ruleset.Owner]string{
		ruleset.AWSVPCCNI:   "AWS_VPC_K8S_CNI_RANDOMIZESNAT=prng",
		ruleset.IPMasqAgent: "--random-fully",
		ruleset.Cilium:      "iptablesRandomFully",
		ruleset.Calico:      "feature detection",
		ruleset.Docker:      "snatrace fix",
	}
	for o, s := range want {
		if r := (ruleset.Rule{Owner: o}); !strings.Contains(Remedy(&r, KindNoFullyRandom), s) {
			t.Errorf("remedy for %s does not mention %q", o, s)
		}
	}
}

func TestHostFindings(t *testing.T) {
	plainLegacy := rule(t, ruleset.Unknown, "masquerade")
	nft := rule(t, ruleset.Unknown, "masquerade fully-random")
	nft.Backend = natrule.Nftables
	rs := &ruleset.Ruleset{Rules: []ruleset.Rule{plainLegacy, nft}}
	rep := Run(Input{Rules: rs, Kernel: "6.1.0", Iptables: "1.6.1"})
	got := strings.Join(kinds(rep), ",")
	want := "medium no-fully-random,medium iptables-too-old,low mixed-backends"
	if got != want {
		t.Errorf("findings %q, want %q", got, want)
	}
}

// snap builds a two-CPU snapshot.
func snap(entries uint64, c0, c1 ctstat.Counters) ctstat.Snapshot {
	return ctstat.Snapshot{Source: ctstat.SourceNetlink, Entries: entries, CPUs: []ctstat.CPU{{CPU: 0, Counters: c0}, {CPU: 1, Counters: c1}}}
}

func TestConntrackFindings(t *testing.T) {
	plain := rule(t, ruleset.Docker, "masquerade")
	fully := rule(t, ruleset.Docker, "masquerade fully-random")
	tests := []struct {
		name  string
		rules []ruleset.Rule
		ct    Conntrack
		want  []string
	}{
		{"race now", []ruleset.Rule{plain}, Conntrack{
			Now: snap(100, ctstat.Counters{}, ctstat.Counters{}), Interval: 5 * time.Second, Max: 1000,
			Delta: snap(100, ctstat.Counters{InsertFailed: 40, Drop: 40}, ctstat.Counters{InsertFailed: 10, Drop: 10}),
		}, []string{"critical race-happening", "high no-fully-random"}},
		{"residual clashes with fully-random", []ruleset.Rule{fully}, Conntrack{
			Now: snap(100, ctstat.Counters{}, ctstat.Counters{}), Interval: time.Second, Max: 1000,
			Delta: snap(100, ctstat.Counters{InsertFailed: 1, Drop: 1}, ctstat.Counters{}),
		}, []string{"high race-happening"}},
		{"table full is not the race", []ruleset.Rule{plain}, Conntrack{
			Now: snap(990, ctstat.Counters{}, ctstat.Counters{}), Interval: time.Second, Max: 1000,
			Delta: snap(990, ctstat.Counters{Drop: 30, EarlyDrop: 30}, ctstat.Counters{}),
		}, []string{"high no-fully-random", "high conntrack-table-full"}},
		{"filling", []ruleset.Rule{fully}, Conntrack{
			Now: snap(850, ctstat.Counters{}, ctstat.Counters{}), Interval: time.Second, Max: 1000,
			Delta: snap(850, ctstat.Counters{}, ctstat.Counters{}),
		}, []string{"medium conntrack-table-full"}},
		{"chains and udp clashes", []ruleset.Rule{fully}, Conntrack{
			Now: snap(1, ctstat.Counters{}, ctstat.Counters{}), Interval: time.Second,
			Delta: snap(1, ctstat.Counters{ChainTooLong: 3}, ctstat.Counters{ClashResolve: 7}),
		}, []string{"medium conntrack-chain-too-long", "info clash-resolved"}},
		{"no interval: past race", []ruleset.Rule{fully}, Conntrack{
			Now: snap(1, ctstat.Counters{InsertFailed: 9, Drop: 9}, ctstat.Counters{}),
		}, []string{"medium race-happened"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ct
			rep := Run(Input{Rules: &ruleset.Ruleset{Rules: tt.rules}, Kernel: "6.1.0", Conntrack: &ct})
			if got := kinds(rep); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("findings %q, want %q", got, tt.want)
			}
		})
	}
	// The live rate per CPU is reported.
	ct := tests[0].ct
	rep := Run(Input{Rules: &ruleset.Ruleset{Rules: []ruleset.Rule{plain}}, Kernel: "6.1.0", Conntrack: &ct})
	if c := rep.Conntrack; c.Rates.InsertFailed != 10 || c.CPUs[0].InsertFailedRate != 8 || c.CPUs[1].DropRate != 2 {
		t.Errorf("rates %+v cpus %+v, want 10/s total, cpu0 8/s, cpu1 drop 2/s", c.Rates, c.CPUs)
	}
	if !strings.Contains(rep.Findings[0].Message, "insert_failed 10.0/s") || !strings.Contains(strings.Join(rep.Findings[0].Evidence, ";"), "cpu0 insert_failed 8.0/s") {
		t.Errorf("race finding does not give the live rate: %+v", rep.Findings[0])
	}
}

// TestReportGolden renders the text and JSON reports of a mixed node dump.
func TestReportGolden(t *testing.T) {
	var all ruleset.Ruleset
	for _, f := range []string{"docker.iptables-save", "aws-vpc-cni.iptables-save", "kube-proxy.iptables-save", "unknown.iptables-save"} {
		data, err := os.ReadFile(filepath.Join("..", "ruleset", "testdata", "owners", f))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := ruleset.Parse(string(data), f, ruleset.FormatAuto)
		if err != nil {
			t.Fatal(err)
		}
		all.Rules = append(all.Rules, rs.Rules...)
		all.Sources = append(all.Sources, rs.Sources...)
	}
	ct := &Conntrack{
		Now: snap(5000, ctstat.Counters{InsertFailed: 300}, ctstat.Counters{InsertFailed: 200}), Interval: 5 * time.Second, Max: 262144,
		Delta: snap(5000, ctstat.Counters{InsertFailed: 30, Drop: 30}, ctstat.Counters{InsertFailed: 20, Drop: 20}),
	}
	rep := Run(Input{Rules: &all, Kernel: "5.15.0-91-generic", Conntrack: ct})
	var text bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"report.txt": text.Bytes(), "report.json": append(js, '\n')} {
		goldenfile.Check(t, filepath.Join("testdata", name), got)
	}
	if !strings.HasPrefix(text.String(), "snatrace audit: 8 source-NAT rules (docker 3, aws-vpc-cni 1, kube-proxy 1, unknown 3); ") {
		t.Errorf("summary line: %q", strings.SplitN(text.String(), "\n", 2)[0])
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	r0 := doc["rules"].([]any)[0].(map[string]any)
	for _, k := range []string{"backend", "table", "chain", "action", "random", "fully_random", "persistent", "ports", "owner", "rule"} {
		if _, ok := r0[k]; !ok {
			t.Errorf("rules[0] has no %q", k)
		}
	}
	f0 := doc["findings"].([]any)[0].(map[string]any)
	for _, k := range []string{"severity", "kind", "message", "remedy"} {
		if _, ok := f0[k]; !ok {
			t.Errorf("findings[0] has no %q", k)
		}
	}
	if doc["conntrack"] == nil {
		t.Errorf("no conntrack in JSON")
	}
}
