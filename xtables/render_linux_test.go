//go:build linux

package xtables

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// saved is the nat table as iptables-legacy-save prints it: the rule lines
// of each chain, in order, and the built-in chains' policies.
type saved struct {
	rules    map[string][]string
	policies map[string]string
}

func parseSaved(t *testing.T, dump string) saved {
	t.Helper()
	s := saved{rules: map[string][]string{}, policies: map[string]string{}}
	for _, l := range strings.Split(dump, "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			f := strings.Fields(l[1:])
			s.rules[f[0]] = s.rules[f[0]][:0:0]
			if f[1] != "-" {
				s.policies[f[0]] = f[1]
			}
		case strings.HasPrefix(l, "-A "):
			chain := strings.Fields(l)[1]
			s.rules[chain] = append(s.rules[chain], l)
		}
	}
	return s
}

// readTable reads ns's IPv4 nat table through a Socket, which it returns
// open.
func readTable(t *testing.T, ns *netns.NS) (*Socket, *Table, *Parsed) {
	return readTableOf(t, ns, IPv4)
}

// readTableOf reads ns's nat table of family f through a Socket, which it
// returns open.
func readTableOf(t *testing.T, ns *netns.NS, f Family) (*Socket, *Table, *Parsed) {
	t.Helper()
	s, err := Open(ns, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tab, err := s.Get("nat")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tab)
	if err != nil {
		t.Fatal(err)
	}
	return s, tab, p
}

// compareWithSave reads ns's IPv4 nat table through the kernel interface
// and checks it against iptables-legacy-save: the same chains, policies and
// rule counts, and every rule Rule renders equal to save's line. It returns
// the rendered and the refused rules.
func compareWithSave(t *testing.T, ns *netns.NS) (rendered, refused []string) {
	return compareFamilyWithSave(t, ns, IPv4)
}

// compareFamilyWithSave is compareWithSave for the nat table of family f,
// against its save tool.
func compareFamilyWithSave(t *testing.T, ns *netns.NS, f Family) (rendered, refused []string) {
	t.Helper()
	want := parseSaved(t, netnstest.Run(t, ns, "", f.Tool()+"-save", "-t", "nat"))
	_, _, p := readTableOf(t, ns, f)
	if len(p.Chains) != len(want.rules) {
		t.Errorf("%d chains, iptables-legacy-save has %d", len(p.Chains), len(want.rules))
	}
	for _, c := range p.Chains {
		lines, ok := want.rules[c.Name]
		if !ok || len(lines) != len(c.Rules) || c.Policy != want.policies[c.Name] {
			t.Errorf("chain %s: %d rules, policy %q; iptables-legacy-save: %v %d, %q", c.Name, len(c.Rules), c.Policy, ok, len(lines), want.policies[c.Name])
			continue
		}
		for k, i := range c.Rules {
			got, err := p.Rule(i, c.Name)
			switch {
			case errors.Is(err, ErrUnsupported):
				refused = append(refused, lines[k])
			case err != nil:
				t.Errorf("%s: %v", lines[k], err)
			case got != lines[k]:
				t.Errorf("rendered\n\t%s\niptables-legacy-save\n\t%s", got, lines[k])
			default:
				rendered = append(rendered, got)
			}
		}
	}
	return rendered, refused
}

// TestRuleAgainstSave loads rules of every shape the renderer knows (and
// some it must refuse) with the real iptables-legacy-restore, reads the
// table back through IPT_SO_GET_ENTRIES, and checks each rendered rule
// byte for byte against iptables-legacy-save's line for it.
func TestRuleAgainstSave(t *testing.T) {
	ns := netnstest.WithRules(t, "xt", "testdata/shapes.rules", "iptables-legacy-restore")
	checkShapes(t, ns, IPv4, 60)
}

// checkShapes compares ns's nat table of family f with its save tool
// (compareFamilyWithSave): n rules rendered, and refused exactly the
// shapes testdata/shapes*.rules hold for that (TCP flags, a protocol
// named from /etc/protocols, multiport, conntrack).
func checkShapes(t *testing.T, ns *netns.NS, f Family, n int) {
	t.Helper()
	rendered, refused := compareFamilyWithSave(t, ns, f)
	wantRefused := []string{
		"-A PREROUTING -p tcp -m tcp --tcp-flags SYN,ACK SYN -j ACCEPT",
		"-A INPUT -p gre -j ACCEPT",
		"-A POSTROUTING -p tcp -m multiport --dports 80,443 -j MASQUERADE",
		"-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE",
	}
	if strings.Join(refused, "\n") != strings.Join(wantRefused, "\n") {
		t.Errorf("refused\n%s\nwant\n%s", strings.Join(refused, "\n"), strings.Join(wantRefused, "\n"))
	}
	if len(rendered) != n {
		t.Errorf("rendered %d rules, want %d:\n%s", len(rendered), n, strings.Join(rendered, "\n"))
	}
}

// TestRule6AgainstSave is TestRuleAgainstSave for ip6tables-legacy: the
// IPv6 address part (prefixes, non-prefix masks, inet_ntop's IPv4 forms)
// and the IPv6 NAT targets (MASQUERADE and REDIRECT revision 0, SNAT 1,
// DNAT 2 on nf_nat_range, bracketed addresses) against
// ip6tables-legacy-save.
func TestRule6AgainstSave(t *testing.T) {
	ns := netnstest.WithRules(t, "xt6", "testdata/shapes6.rules", "ip6tables-legacy-restore")
	checkShapes(t, ns, IPv6, 45)
}

// TestOwnersAgainstSave does the same for the rules every owner writes
// (ruleset/testdata/owners/src): each source-NAT rule and each rule with a
// set match (kube-proxy ipvs, Calico, Antrea, kube-router, Weave) must
// render.
func TestOwnersAgainstSave(t *testing.T) {
	srcs, _ := filepath.Glob("../ruleset/testdata/owners/src/*.rules")
	if len(srcs) < 10 {
		t.Fatalf("%d rule sources", len(srcs))
	}
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src), ".rules")
		t.Run(name, func(t *testing.T) {
			_, refused := compareWithSave(t, netnstest.WithRules(t, "xt", src, "iptables-legacy-restore"))
			for _, r := range refused {
				if strings.Contains(r, "-j MASQUERADE") || strings.Contains(r, "-j SNAT") || strings.Contains(r, "-m set") {
					t.Errorf("source-NAT or set-matching rule refused: %s", r)
				}
			}
		})
	}
}

// TestReplaceRandomFully makes two MASQUERADE rules and one SNAT rule
// fully-random through WithRandomFully and Replace, and checks with the
// real iptables-legacy-save -c that exactly those lines gained
// --random-fully and every other line, counters included, is unchanged.
func TestReplaceRandomFully(t *testing.T) {
	ns := netnstest.WithRules(t, "xt", "testdata/shapes.rules", "iptables-legacy-restore")
	netnstest.Run(t, ns, "*nat\n[7:420] -I POSTROUTING 1 -s 10.99.0.0/16 -j MASQUERADE\nCOMMIT\n", "iptables-legacy-restore", "-c", "--noflush")
	before := netnstest.Run(t, ns, "", "iptables-legacy-save", "-c", "-t", "nat")
	s, tab, p := readTable(t, ns)
	post := p.Chain("POSTROUTING")
	var idx []int
	for _, k := range []int{0, 5, 10} { // 10.99 (counters 7:420), ! -s 10.0.0.0/8, SNAT 192.0.2.1
		idx = append(idx, post.Rules[k])
	}
	before2 := netnstest.Run(t, ns, "", "iptables-legacy-save", "-c", "-t", "nat")
	err := s.Replace(tab, func(e []byte) error { return p.SetRandomFully(e, append(idx, post.Rules[1]), true) })
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("with a MARK target among the rules: %v, want ErrUnsupported", err)
	}
	if got := netnstest.Run(t, ns, "", "iptables-legacy-save", "-c", "-t", "nat"); stripDate(got) != stripDate(before2) {
		t.Fatalf("a refused edit changed the table:\n%s", got)
	}
	var committed []byte
	if err := s.Replace(tab, func(e []byte) error { committed = e; return p.SetRandomFully(e, idx, true) }); err != nil {
		t.Fatal(err)
	}

	after := netnstest.Run(t, ns, "", "iptables-legacy-save", "-c", "-t", "nat")
	changed := map[string]string{
		"[7:420] -A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE":                        "[7:420] -A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE --random-fully",
		"[0:0] -A POSTROUTING ! -s 10.0.0.0/8 ! -d 224.0.0.0/4 ! -o lo -j MASQUERADE": "[0:0] -A POSTROUTING ! -s 10.0.0.0/8 ! -d 224.0.0.0/4 ! -o lo -j MASQUERADE --random-fully",
		"[0:0] -A POSTROUTING -s 10.5.0.0/16 -j SNAT --to-source 192.0.2.1":           "[0:0] -A POSTROUTING -s 10.5.0.0/16 -j SNAT --to-source 192.0.2.1 --random-fully",
	}
	bl, al := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(bl) != len(al) {
		t.Fatalf("%d lines before, %d after:\n%s", len(bl), len(al), after)
	}
	n := 0
	for k := range bl {
		if strings.HasPrefix(bl[k], "#") {
			continue
		}
		want := bl[k]
		if w, ok := changed[bl[k]]; ok {
			want = w
			n++
		}
		if al[k] != want {
			t.Errorf("line %d:\n\t%s\nwant\n\t%s", k+1, al[k], want)
		}
	}
	if n != len(changed) {
		t.Errorf("%d of the %d planned lines found before the change:\n%s", n, len(changed), before)
	}
	// Read back: the table is what was committed, also once the counters
	// move (zeroed here), and no longer the table before.
	netnstest.Run(t, ns, "", "iptables-legacy", "-t", "nat", "-Z")
	back, err := s.Get("nat")
	if err != nil {
		t.Fatal(err)
	}
	fpBack, err1 := back.Fingerprint()
	fpCommitted, err2 := (&Table{Info: tab.Info, Family: tab.Family, Entries: committed}).Fingerprint()
	fpBefore, err3 := tab.Fingerprint()
	if err := errors.Join(err1, err2, err3); err != nil || fpBack != fpCommitted || fpBack == fpBefore {
		t.Errorf("fingerprints: read back %x, committed %x, before %x (%v): want the first two equal, the third apart", fpBack, fpCommitted, fpBefore, err)
	}
	// A table that changed since the snapshot is refused, not overwritten.
	netnstest.Run(t, ns, "*nat\n-A POSTROUTING -j ACCEPT\nCOMMIT\n", "iptables-legacy-restore", "--noflush")
	if err := s.Replace(tab, func(e []byte) error { return p.SetRandomFully(e, idx, true) }); !errors.Is(err, ErrChanged) {
		t.Errorf("replacing a table that changed since it was read: %v, want ErrChanged", err)
	}
}

// stripDate drops iptables-save's comment lines, which carry the time.
func stripDate(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReadTableAbsent: a namespace without a legacy nat table reads as
// ErrNoTable, and the read does not create the table (asking the socket
// for it would).
func TestReadTableAbsent(t *testing.T) {
	ns := netnstest.New(t, "xtnone")
	if _, err := ReadTable(ns, IPv4, "nat"); !errors.Is(err, ErrNoTable) {
		t.Fatalf("ReadTable of a namespace without the table: %v, want ErrNoTable", err)
	}
	if ok, err := HasTable(ns, IPv4, "nat"); err != nil || ok {
		t.Errorf("after the read the table exists: %v %v", ok, err)
	}
	netnstest.Run(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n", "iptables-legacy-restore")
	tab, err := ReadTable(ns, IPv4, "nat")
	if err != nil || tab.NumEntries == 0 {
		t.Fatalf("ReadTable once the table exists: %v", err)
	}
}

// TestReplaceRandomFully6 commits fully-random on an IPv6 MASQUERADE
// (revision 0) and SNAT (revision 1) rule through an IPv6 socket and
// checks with the real ip6tables-legacy-save -c that exactly those two
// lines gained --random-fully, every other line and counter unchanged.
func TestReplaceRandomFully6(t *testing.T) {
	ns := netnstest.WithRules(t, "xt6r", "testdata/shapes6.rules", "ip6tables-legacy-restore")
	before := stripDate(netnstest.Run(t, ns, "", "ip6tables-legacy-save", "-c", "-t", "nat"))
	s, tab, p := readTableOf(t, ns, IPv6)
	post := p.Chain("POSTROUTING")
	idx := []int{post.Rules[3], post.Rules[8]} // ! -s fd00::/8 … MASQUERADE; SNAT 2001:db8::1
	if err := s.Replace(tab, func(e []byte) error { return p.SetRandomFully(e, []int{post.Rules[1]}, true) }); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a MARK target: %v, want ErrUnsupported", err)
	}
	if err := s.Replace(tab, func(e []byte) error { return p.SetRandomFully(e, idx, true) }); err != nil {
		t.Fatal(err)
	}
	after := stripDate(netnstest.Run(t, ns, "", "ip6tables-legacy-save", "-c", "-t", "nat"))
	want := strings.NewReplacer(
		"! -o lo -j MASQUERADE\n", "! -o lo -j MASQUERADE --random-fully\n",
		"-j SNAT --to-source 2001:db8::1\n", "-j SNAT --to-source 2001:db8::1 --random-fully\n",
	).Replace(before)
	if want == before || after != want {
		t.Errorf("after the commit:\n%s\nwant:\n%s", after, want)
	}
	v4, err := Open(ns, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	if err := v4.Replace(tab, func([]byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "IPv6 table committed through an IPv4 socket") {
		t.Errorf("an IPv6 table through an IPv4 socket: %v", err)
	}
}

// TestGetInto: a read into an earlier snapshot's memory uses that memory
// and yields what a read into fresh memory does, and a table that has
// grown past the old memory is read into fresh memory; nothing of the old
// snapshot's bytes is left behind (every entry as a fresh read has it).
func TestGetInto(t *testing.T) {
	ns := netnstest.WithRules(t, "xtinto", "testdata/shapes.rules", "iptables-legacy-restore")
	s, tab, _ := readTable(t, ns)
	fresh, err := s.Get("nat")
	if err != nil {
		t.Fatal(err)
	}
	mem := unsafe.SliceData(tab.buf)
	copy(tab.Entries, bytes.Repeat([]byte{0xa5}, len(tab.Entries))) // what must not survive
	into, err := s.GetInto("nat", tab)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(into.buf) != mem {
		t.Error("GetInto read into fresh memory, not the old snapshot's")
	}
	if into.Info != fresh.Info || !bytes.Equal(into.Entries, fresh.Entries) {
		t.Errorf("GetInto: %+v, %d bytes; a fresh Get: %+v, %d bytes (equal: %v)", into.Info, len(into.Entries), fresh.Info, len(fresh.Entries), bytes.Equal(into.Entries, fresh.Entries))
	}
	if _, err := Parse(into); err != nil {
		t.Errorf("the table read into old memory does not parse: %v", err)
	}
	netnstest.Run(t, ns, "*nat\n-A POSTROUTING -s 10.77.0.0/16 -j MASQUERADE\nCOMMIT\n", "iptables-legacy-restore", "--noflush")
	grown, err := s.GetInto("nat", into)
	if err != nil {
		t.Fatal(err)
	}
	if grown.Size <= fresh.Size || unsafe.SliceData(grown.buf) == mem || len(grown.Entries) != int(grown.Size) {
		t.Errorf("a grown table (%d bytes, was %d) read into the old memory: %v", grown.Size, fresh.Size, unsafe.SliceData(grown.buf) == mem)
	}
}
