//go:build linux

package ruleset

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/kubegen"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/tool"
)

// fullView renders every field a fix and the audit use of each rule.
func fullView(rs *Ruleset) string {
	var b strings.Builder
	for _, r := range rs.Rules {
		fmt.Fprintf(&b, "%s %s %s %s #%d hook=%s unreachable=%v owner=%s (%s) nat=%q match=%q comment=%q text=%q\n",
			r.Backend, r.Family, r.Table, r.Chain, r.Position, r.Hook, r.Unreachable, r.Owner, r.OwnerEvidence, r.NAT.String(), r.Match, r.Comment, r.Text)
	}
	return b.String()
}

// TestReadLegacyDirect loads every owner's rules into iptables-legacy and
// reads them twice, through iptables-legacy-save and through the kernel
// interface (LegacyDirect): the rules must come out the same in every
// field — place, hook, reachability, owner and its evidence, NAT mode,
// match, comment, text — and be read directly, ipset matches included
// (kube-proxy ipvs, Calico, Antrea, kube-router, Weave). A NAT chain with a
// rule xtables does not print (testdata/direct/fallback.rules) must be read
// through the tool instead, and the read must say where it read from.
func TestReadLegacyDirect(t *testing.T) {
	srcs, _ := filepath.Glob("testdata/owners/src/*.rules")
	if len(srcs) < 10 {
		t.Fatalf("%d rule sources", len(srcs))
	}
	srcs = append(srcs, "testdata/direct/reach.rules", "testdata/direct/fallback.rules")
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src), ".rules")
		t.Run(name, func(t *testing.T) {
			ns := netnstest.WithRules(t, "direct", src, "iptables-legacy-restore")
			viaSave, direct := readBothWays(t, ns)
			if got, want := fullView(direct), fullView(viaSave); got != want || want == "" {
				t.Errorf("read directly:\n%s\nthrough iptables-legacy-save:\n%s", got, want)
			}
			if name == "reach" {
				want := "DEEP2:postrouting ORPHAN:unreachable TWO-HOOKS: USED:postrouting VIA-GOTO:postrouting" // the kernel keeps user chains sorted
				if got := reachView(direct); got != want {
					t.Errorf("reachability read directly: %s, want %s", got, want)
				}
			}
			wantWhere := DirectSource
			if name == "fallback" {
				wantWhere = "iptables-legacy-save"
			}
			if where := legacySource(direct); where != wantWhere {
				t.Errorf("read from %q, want %q", where, wantWhere)
			}
		})
	}
}

// TestReadLegacyDirect6 is TestReadLegacyDirect for ip6tables-legacy: a
// kube-proxy table (internal/kubegen, IPv6) and testdata/direct/v6.rules
// read through the kernel interface and through ip6tables-legacy-save come
// out the same in every field, as IPv6 rules, from IP6T_SO_GET_ENTRIES;
// beside an IPv4 table (a dual-stack node) each family is read directly
// from its own table.
func TestReadLegacyDirect6(t *testing.T) {
	var kube strings.Builder
	if err := kubegen.Write6(&kube, 30, 3); err != nil {
		t.Fatal(err)
	}
	kubeFile := filepath.Join(t.TempDir(), "kube6.rules")
	if err := os.WriteFile(kubeFile, []byte(kube.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{kubeFile, "testdata/direct/v6.rules"} {
		name := strings.TrimSuffix(filepath.Base(src), ".rules")
		t.Run(name, func(t *testing.T) {
			ns := netnstest.WithRules(t, "direct6", src, "ip6tables-legacy-restore")
			viaSave, direct := readBothWays(t, ns)
			got, want := fullView(direct), fullView(viaSave)
			if got != want || !strings.Contains(want, "iptables-legacy ip6 nat") || strings.Contains(want, "iptables-legacy ip nat") {
				t.Errorf("read directly:\n%s\nthrough ip6tables-legacy-save:\n%s", got, want)
			}
			if where := sourcesOf(direct, "iptables-legacy"); where != DirectSource6 {
				t.Errorf("read from %q, want %s", where, DirectSource6)
			}
			if name == "v6" {
				want := "POSTROUTING:postrouting DEEP2:postrouting KUBE-POSTROUTING:postrouting ORPHAN:unreachable VIA-GOTO:postrouting" // user chains sorted, as the kernel keeps them
				if got := reachView(direct); got != want {
					t.Errorf("reachability read directly: %s, want %s", got, want)
				}
			}
		})
	}
	t.Run("dual-stack", func(t *testing.T) {
		ns := netnstest.WithRules(t, "direct46", "testdata/direct/v6.rules", "ip6tables-legacy-restore")
		data, err := os.ReadFile("testdata/owners/src/kube-proxy.rules")
		if err != nil {
			t.Fatal(err)
		}
		netnstest.LoadRules(t, ns, string(data), "iptables-legacy-restore")
		viaSave, direct := readBothWays(t, ns)
		if got, want := fullView(direct), fullView(viaSave); got != want || !strings.Contains(want, "iptables-legacy ip nat") || !strings.Contains(want, "iptables-legacy ip6 nat") {
			t.Errorf("read directly:\n%s\nthrough the save tools:\n%s", got, want)
		}
		if got := sourcesOf(direct, "iptables-legacy"); got != DirectSource+" "+DirectSource6 {
			t.Errorf("read from %q, want both kernel interfaces", got)
		}
		// Labelled with the version each save tool prints in its header.
		if got, want := versionsOf(direct, "iptables-legacy"), versionsOf(viaSave, "iptables-legacy"); got != want || !strings.HasPrefix(want, "1.") {
			t.Errorf("versions read directly %q, through the save tools %q", got, want)
		}
		if n := len(direct.TakeDumps()); n != 2 {
			t.Errorf("%d dumps, want one per family", n)
		}
	})
}

// sourcesOf lists where rs read the rules of backend, in order.
func sourcesOf(rs *Ruleset, backend Backend) string {
	return sourceField(rs, backend, func(s Source) string { return s.Where })
}

// versionsOf lists the versions of the sources of backend, in order.
func versionsOf(rs *Ruleset, backend Backend) string {
	return sourceField(rs, backend, func(s Source) string { return s.Version })
}

// sourceField lists a field of each source of backend, in order.
func sourceField(rs *Ruleset, backend Backend, field func(Source) string) string {
	var out []string
	for _, s := range rs.Sources {
		if s.Backend == backend {
			out = append(out, field(s))
		}
	}
	return strings.Join(out, " ")
}

// readBothWays reads ns through the legacy save tools and through the
// kernel interface (LegacyDirect).
func readBothWays(t *testing.T, ns *netns.NS) (viaSave, direct *Ruleset) {
	t.Helper()
	ctx := context.Background()
	viaSave, err := Read(ctx, ReadOptions{NS: ns})
	if err != nil {
		t.Fatal(err)
	}
	direct, err = Read(ctx, ReadOptions{NS: ns, LegacyDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	return viaSave, direct
}

// reachView renders each rule's chain and hook, or "unreachable".
func reachView(rs *Ruleset) string {
	var out []string
	for _, r := range rs.Rules {
		h := r.Hook
		if r.Unreachable {
			h = "unreachable"
		}
		out = append(out, r.Chain+":"+h)
	}
	return strings.Join(out, " ")
}

// legacySource is where rs read its IPv4 iptables-legacy rules.
func legacySource(rs *Ruleset) string {
	for _, s := range rs.Sources {
		if s.Backend == "iptables-legacy" && (s.Where == DirectSource || !strings.HasPrefix(s.Where, "ip6")) {
			return s.Where
		}
	}
	return ""
}

// TestLegacyTextsWholeTable prints a kube-proxy nat table of 3,000 rules
// (internal/kubegen: statistic, DNAT, marks, comments), its IPv6 twin and
// every legacy owner's from the entries the read took — every one of them
// prints whole — and checks every rule line against the save tool's, in
// order; with a filter, only the lines it accepts, still in order.
func TestLegacyTextsWholeTable(t *testing.T) {
	type source struct{ path, tool, direct string }
	var srcs []source
	owners, _ := filepath.Glob("testdata/owners/src/*.rules")
	for _, src := range owners {
		srcs = append(srcs, source{src, "iptables-legacy", DirectSource})
	}
	for _, k := range []struct {
		name  string
		write func(io.Writer, int, int) error
		src   source
	}{{"kube.rules", kubegen.Write, source{"", "iptables-legacy", DirectSource}}, {"kube6.rules", kubegen.Write6, source{"", "ip6tables-legacy", DirectSource6}}} {
		var kube strings.Builder
		if err := k.write(&kube, 300, 3); err != nil {
			t.Fatal(err)
		}
		k.src.path = filepath.Join(t.TempDir(), k.name)
		if err := os.WriteFile(k.src.path, []byte(kube.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, k.src)
	}
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src.path), ".rules")
		t.Run(name, func(t *testing.T) {
			ns := netnstest.WithRules(t, "ltext", src.path, src.tool+"-restore")
			var want []string
			for _, l := range strings.Split(netnstest.Run(t, ns, "", src.tool+"-save", "-t", "nat"), "\n") {
				if strings.HasPrefix(l, "-A ") {
					want = append(want, l)
				}
			}
			ctx := context.Background()
			rs, err := Read(ctx, ReadOptions{NS: ns, LegacyDirect: true})
			if err != nil {
				t.Fatal(err)
			}
			dumps := rs.TakeDumps()
			if len(dumps) == 0 || dumps[0].Direct == nil {
				t.Fatalf("%s: not read directly", name)
			}
			keepDNAT := func(l string) bool { return strings.Contains(l, "DNAT") }
			for _, keep := range []func(string) bool{nil, keepDNAT} {
				texts, err := LegacyTexts(ctx, ns, nil, dumps[0], keep, "nat")
				if err != nil || len(texts) != 1 {
					t.Fatalf("%d texts, %v", len(texts), err)
				}
				var wantKept []string
				for _, l := range want {
					if keep == nil || keep(l) {
						wantKept = append(wantKept, l)
					}
				}
				got := strings.Split(strings.TrimSuffix(texts[0].Text, "\n"), "\n")
				if texts[0].Tool == src.direct+" nat" && (got[0] != "*nat" || got[len(got)-1] != "COMMIT") {
					t.Errorf("printed table does not open with *nat and end with COMMIT: %q … %q", got[0], got[len(got)-1])
				}
				var lines []string
				for _, l := range got {
					if strings.HasPrefix(l, "-A ") {
						lines = append(lines, l)
					}
				}
				if texts[0].Tool != src.direct+" nat" {
					t.Fatalf("%s: printed by %s, not from the entries", name, texts[0].Tool)
				}
				if strings.Join(lines, "\n") != strings.Join(wantKept, "\n") {
					t.Errorf("printed from the kernel's entries (%d lines):\n%s\n%s-save (%d lines):\n%s", len(lines), strings.Join(lines, "\n"), src.tool, len(wantKept), strings.Join(wantKept, "\n"))
				}
				if keep == nil {
					continue
				}
				// Printed at read time (LegacyKeep): the same text, the
				// entries let go.
				early, err := Read(ctx, ReadOptions{NS: ns, LegacyDirect: true, LegacyKeep: keep})
				if err != nil {
					t.Fatal(err)
				}
				ed := early.TakeDumps()
				if len(ed) != 1 || ed[0].Direct != nil {
					t.Fatalf("read with LegacyKeep: %d dumps, the first holding the table's entries: %v", len(ed), len(ed) > 0 && ed[0].Direct != nil)
				}
				etexts, err := LegacyTexts(ctx, ns, nil, ed[0], nil, "nat")
				if err != nil || len(etexts) != 1 || etexts[0] != texts[0] {
					t.Errorf("kept at read time: %+v, %v; want %+v", etexts, err, texts[0])
				}
			}
		})
	}
}

// TestLegacyKeepUnprintable reads, as the audit does (LegacyKeep), a nat
// table whose NAT chain prints but another chain holds a rule xtables
// cannot print (multiport): the read still comes from the kernel, the
// entries are let go, and the nat table's text is asked of
// iptables-legacy-save inside the namespace (a nil runner runs there, not
// on the host).
func TestLegacyKeepUnprintable(t *testing.T) {
	ns := netnstest.New(t, "keepunp")
	rules := "*nat\n:POSTROUTING ACCEPT [0:0]\n:SVC - [0:0]\n-A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE\n" +
		"-A SVC -p tcp -m multiport --dports 80,443 -j RETURN\nCOMMIT\n"
	netnstest.Run(t, ns, rules, "iptables-legacy-restore")
	ctx := context.Background()
	rs, err := Read(ctx, ReadOptions{NS: ns, LegacyDirect: true, LegacyKeep: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if where := sourcesOf(rs, "iptables-legacy"); where != DirectSource || len(rs.Rules) != 1 {
		t.Fatalf("read %d rules from %q, want 1 from %s", len(rs.Rules), where, DirectSource)
	}
	d := rs.TakeDumps()
	if len(d) != 1 || d[0].Direct != nil {
		t.Fatalf("%d dumps, the first holding the entries: %v", len(d), len(d) == 1 && d[0].Direct != nil)
	}
	texts, err := LegacyTexts(ctx, ns, nil, d[0], nil, "nat")
	if err != nil || len(texts) != 1 || texts[0].Tool != "iptables-legacy-save -t nat" || !strings.Contains(texts[0].Text, "-m multiport --dports 80,443") {
		t.Errorf("nat text: %+v, %v; want the namespace's table from iptables-legacy-save -t nat", texts, err)
	}
}

// withoutLegacyTools is a host without iptables-legacy's tools (a
// RHEL-like host whose legacy rules another image's iptables wrote).
func withoutLegacyTools(ns *netns.NS) tool.Runner {
	return tool.Without{Runner: tool.Exec{NS: ns}, Hidden: func(name string) bool {
		return slices.Contains(natrule.LegacyToolNames(), name)
	}}
}

// TestReadLegacyDirectWithoutTools reads iptables-legacy rules on a host
// without iptables-legacy's tools: through the kernel interface they come
// out as with the tools (kube-proxy's table); a NAT chain with a rule
// xtables does not print is a read error naming the missing tool, not
// silence; without LegacyDirect nothing legacy is read, as before.
func TestReadLegacyDirectWithoutTools(t *testing.T) {
	ctx := context.Background()
	ns := netnstest.WithRules(t, "notools", "testdata/owners/src/kube-proxy.rules", "iptables-legacy-restore")
	withTools, err := Read(ctx, ReadOptions{NS: ns, LegacyDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	run := withoutLegacyTools(ns)
	direct, err := Read(ctx, ReadOptions{NS: ns, LegacyDirect: true, Runner: run})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fullView(direct), fullView(withTools); got != want || !strings.Contains(want, "iptables-legacy") {
		t.Errorf("without the tools:\n%s\nwith them:\n%s", got, want)
	}
	if where := legacySource(direct); where != DirectSource || len(direct.ReadErrors) != 0 {
		t.Errorf("read from %q, read errors %v; want %s and none", where, direct.ReadErrors, DirectSource)
	}
	viaTools, err := Read(ctx, ReadOptions{NS: ns, Runner: run})
	if err != nil {
		t.Fatal(err)
	}
	if got := fullView(viaTools); strings.Contains(got, "iptables-legacy") {
		t.Errorf("without LegacyDirect and without the tools, legacy rules were read:\n%s", got)
	}

	fb := netnstest.WithRules(t, "notools", "testdata/direct/fallback.rules", "iptables-legacy-restore")
	rs, err := Read(ctx, ReadOptions{NS: fb, LegacyDirect: true, Runner: withoutLegacyTools(fb)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.ReadErrors) != 1 || rs.ReadErrors[0].Source != DirectSource || !strings.Contains(rs.ReadErrors[0].Err, "iptables-legacy-save is not installed") {
		t.Errorf("read errors %+v; want one from %s naming the missing tool", rs.ReadErrors, DirectSource)
	}
}
