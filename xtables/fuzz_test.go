package xtables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// tableFrom decodes a test table: the 84 bytes of struct ipt_getinfo, then
// the entries (testdata/*.bin are real tables written that way), of the
// IPv4 layout.
func tableFrom(data []byte) *Table { return tableOf(data, IPv4) }

// tableOf is tableFrom for a table of family f.
func tableOf(data []byte, f Family) *Table {
	if len(data) < getInfoLen {
		return nil
	}
	ne := binary.NativeEndian
	t := &Table{Info: Info{Name: cString(data[:32]), ValidHooks: ne.Uint32(data[32:])}, Family: f, Entries: data[getInfoLen:]}
	for h := 0; h < 5; h++ {
		t.HookEntry[h], t.Underflow[h] = ne.Uint32(data[36+4*h:]), ne.Uint32(data[56+4*h:])
	}
	t.NumEntries, t.Size = ne.Uint32(data[76:]), ne.Uint32(data[80:])
	return t
}

const getInfoLen = 84

// TestParseRecorded reads a nat table recorded from the kernel (loaded from
// testdata/shapes.rules by iptables-legacy-restore) without root: its
// chains, policies, the rendering of POSTROUTING's source-NAT rules and of
// a service proxy's statistic match and DNAT.
func TestParseRecorded(t *testing.T) {
	p := parseRecorded(t, "testdata/shapes.nat.bin", IPv4, "PREROUTING:ACCEPT INPUT:ACCEPT OUTPUT:ACCEPT POSTROUTING:ACCEPT EMPTY: GOTO-ME: SETS: SVC: USER:")
	post := p.Chain("POSTROUTING")
	got, err := p.Rule(post.Rules[11], "POSTROUTING")
	if want := "-A POSTROUTING -s 10.7.0.0/16 -p udp -j SNAT --to-source 192.0.2.1:2000-3000 --random-fully --persistent"; err != nil || got != want {
		t.Errorf("rule 12 of POSTROUTING: %q, %v; want %q", got, err, want)
	}
	svc := p.Chain("SVC")
	for k, want := range map[int]string{
		0:  `-A SVC -m comment --comment "ns0/svc0:http -> 10.244.0.1:8080" -m statistic --mode random --probability 0.33333333349 -j RETURN`,
		11: "-A SVC -p tcp -j DNAT --to-destination 10.244.0.4:1000-2000/1500",
	} {
		if got, err := p.Rule(svc.Rules[k], "SVC"); err != nil || got != want {
			t.Errorf("rule %d of SVC: %q, %v; want %q", k+1, got, err, want)
		}
	}
	if name, chain := p.JumpTarget(post.Rules[3]); name != "GOTO-ME" || !chain || !p.Goto(post.Rules[3]) {
		t.Errorf("rule 4 of POSTROUTING goes to %q (chain %v, goto %v), want goto GOTO-ME", name, chain, p.Goto(post.Rules[3]))
	}
}

// parseRecorded parses the recorded table file of family f and checks its
// chains and policies ("NAME:POLICY ...").
func parseRecorded(t *testing.T, file string, f Family, chains string) *Parsed {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tableOf(data, f))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.Chains {
		got = append(got, c.Name+":"+c.Policy)
	}
	if strings.Join(got, " ") != chains {
		t.Errorf("chains %s, want %s", strings.Join(got, " "), chains)
	}
	return p
}

// TestParseRecorded6 reads an IPv6 nat table recorded from the kernel
// (testdata/shapes6.rules loaded by ip6tables-legacy-restore) without
// root, in the IPv6 layout: its chains and a few rules as
// ip6tables-legacy-save printed them; read in the IPv4 layout it is
// malformed.
func TestParseRecorded6(t *testing.T) {
	p := parseRecorded(t, "testdata/shapes6.nat.bin", IPv6, "PREROUTING:ACCEPT INPUT:ACCEPT OUTPUT:ACCEPT POSTROUTING:ACCEPT GOTO-ME: SETS: SVC: USER:")
	data, err := os.ReadFile("testdata/shapes6.nat.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(tableFrom(data)); !errors.Is(err, ErrMalformed) {
		t.Errorf("an IPv6 table read as IPv4: %v, want ErrMalformed", err)
	}
	for _, c := range []struct {
		chain string
		k     int
		want  string
	}{
		{"INPUT", 0, "-A INPUT -s 2001::/ffff:0:ffff:: -j ACCEPT"},
		{"INPUT", 5, "-A INPUT -s ::10.0.0.1/128 -d ::ffff:10.0.0.2/128 -j ACCEPT"},
		{"POSTROUTING", 3, "-A POSTROUTING ! -s fd00::/8 ! -d ff00::/8 ! -o lo -j MASQUERADE"},
		{"POSTROUTING", 10, "-A POSTROUTING -s fd07::/64 -p udp -j SNAT --to-source [2001:db8::1]:2000-3000 --random-fully --persistent"},
		{"SVC", 5, "-A SVC -j DNAT --to-destination fd00:244::3"},
	} {
		if got, err := p.Rule(p.Chain(c.chain).Rules[c.k], c.chain); err != nil || got != c.want {
			t.Errorf("rule %d of %s: %q, %v; want %q", c.k+1, c.chain, got, err, c.want)
		}
	}
	post := p.Chain("POSTROUTING")
	if name, chain := p.JumpTarget(post.Rules[2]); name != "GOTO-ME" || !chain || !p.Goto(post.Rules[2]) {
		t.Errorf("rule 3 of POSTROUTING goes to %q (chain %v, goto %v), want goto GOTO-ME", name, chain, p.Goto(post.Rules[2]))
	}
}

// TestSetRecorded renders the recorded table's set matches: with the sets'
// names (which the kernel gave when the table was recorded) exactly as
// iptables-legacy-save printed them, without a name not at all.
func TestSetRecorded(t *testing.T) {
	data, err := os.ReadFile("testdata/shapes.nat.bin")
	if err != nil {
		t.Fatal(err)
	}
	tab := tableFrom(data)
	if got := fmt.Sprint(tab.Family.layout().setIndexes(tab.Entries)); got != "[0 1 2]" {
		t.Errorf("set indexes %s, want [0 1 2]", got)
	}
	p, err := Parse(tab)
	if err != nil {
		t.Fatal(err)
	}
	sets := p.Chain("SETS")
	want := []string{
		"-A SETS -m set --match-set snt-net src -j MASQUERADE",
		"-A SETS -m set ! --match-set snt-net dst -j RETURN",
		"-A SETS -m set --match-set snt-ipport dst,dst -m set ! --match-set snt-net src -j MASQUERADE --random-fully",
		"-A SETS -m set --match-set snt-three src,dst,src --return-nomatch ! --update-counters ! --update-subcounters -j ACCEPT",
		"-A SETS -m set --match-set snt-net src --packets-lt 10 ! --bytes-eq 100 -j RETURN",
		"-A SETS -m set --match-set snt-net dst --packets-eq 3 --bytes-gt 18446744073709551615 -j RETURN",
		"-A SETS -m set ! --match-set snt-net src ! --packets-eq 0 --bytes-lt 1 -j RETURN",
	}
	if len(sets.Rules) != len(want) {
		t.Fatalf("%d rules in SETS, want %d", len(sets.Rules), len(want))
	}
	for k, i := range sets.Rules {
		if _, err := p.Rule(i, "SETS"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("rule %d without set names: %v, want ErrUnsupported", k+1, err)
		}
	}
	tab.SetNames = map[uint16]string{0: "snt-net", 1: "snt-ipport", 2: "snt-three"}
	for k, i := range sets.Rules {
		if got, err := p.Rule(i, "SETS"); err != nil || got != want[k] {
			t.Errorf("rule %d: %q, %v; want %q", k+1, got, err, want[k])
		}
	}
}

// FuzzParse feeds Fingerprint, setIndexes, Parse, Rule (set matches
// named), JumpTarget and SetRandomFully arbitrary tables, in both
// families' layouts: they may refuse one, never panic or read out of
// bounds.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/shapes.nat.bin", "testdata/shapes6.nat.bin"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzTable(tableOf(data, IPv4))
		fuzzTable(tableOf(data, IPv6))
	})
}

// fuzzTable runs FuzzParse's calls on one table.
func fuzzTable(tab *Table) {
	if tab == nil {
		return
	}
	tab.Fingerprint()
	tab.SetNames = map[uint16]string{}
	for _, i := range tab.Family.layout().setIndexes(tab.Entries) {
		tab.SetNames[i] = "s"
	}
	p, err := Parse(tab)
	if err != nil {
		return
	}
	for _, c := range p.Chains {
		for _, i := range c.Rules {
			p.Rule(i, c.Name)
			p.JumpTarget(i)
			p.SetRandomFully(append([]byte(nil), tab.Entries...), []int{i}, i%2 == 0)
		}
	}
}

// TestFingerprint: a table's fingerprint ignores its counters and changes
// with any rule's flag; a malformed table is an error, not a fingerprint.
func TestFingerprint(t *testing.T) {
	p := parseRecorded(t, "testdata/shapes.nat.bin", IPv4, "PREROUTING:ACCEPT INPUT:ACCEPT OUTPUT:ACCEPT POSTROUTING:ACCEPT EMPTY: GOTO-ME: SETS: SVC: USER:")
	fp := func(entries []byte) uint64 {
		t.Helper()
		sum, err := (&Table{Info: p.Table.Info, Family: IPv4, Entries: entries}).Fingerprint()
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	orig := fp(p.Table.Entries)
	counted := bytes.Clone(p.Table.Entries)
	for _, e := range p.Entries {
		off := int(e.Offset) + p.l.counters
		binary.NativeEndian.PutUint64(counted[off:], 7)   // packets
		binary.NativeEndian.PutUint64(counted[off+8:], 9) // bytes
	}
	if fp(counted) != orig {
		t.Error("moving the counters changed the fingerprint")
	}
	flagged := bytes.Clone(p.Table.Entries)
	post := p.Chain("POSTROUTING")
	if err := p.SetRandomFully(flagged, []int{post.Rules[4]}, true); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(flagged, p.Table.Entries) || fp(flagged) == orig {
		t.Error("setting one rule's fully-random flag left the fingerprint as it was")
	}
	if _, err := (&Table{Family: IPv4, Entries: p.Table.Entries[:len(p.Table.Entries)-8]}).Fingerprint(); err == nil {
		t.Error("a truncated table has a fingerprint")
	}
}
