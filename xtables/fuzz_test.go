package xtables

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// tableFrom decodes a test table: the 84 bytes of struct ipt_getinfo, then
// the entries (testdata/*.bin are real tables written that way).
func tableFrom(data []byte) *Table {
	if len(data) < getInfoLen {
		return nil
	}
	ne := binary.NativeEndian
	t := &Table{Info: Info{Name: cString(data[:32]), ValidHooks: ne.Uint32(data[32:])}, Entries: data[getInfoLen:]}
	for h := 0; h < 5; h++ {
		t.HookEntry[h], t.Underflow[h] = ne.Uint32(data[36+4*h:]), ne.Uint32(data[56+4*h:])
	}
	t.NumEntries, t.Size = ne.Uint32(data[76:]), ne.Uint32(data[80:])
	return t
}

const getInfoLen = 84

// TestParseRecorded reads a nat table recorded from the kernel (loaded from
// testdata/shapes.rules by iptables-legacy-restore) without root: its
// chains, policies and the rendering of POSTROUTING's source-NAT rules.
func TestParseRecorded(t *testing.T) {
	data, err := os.ReadFile("testdata/shapes.nat.bin")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tableFrom(data))
	if err != nil {
		t.Fatal(err)
	}
	var chains []string
	for _, c := range p.Chains {
		chains = append(chains, c.Name+":"+c.Policy)
	}
	if got := strings.Join(chains, " "); got != "PREROUTING:ACCEPT INPUT:ACCEPT OUTPUT:ACCEPT POSTROUTING:ACCEPT EMPTY: GOTO-ME: USER:" {
		t.Errorf("chains %s", got)
	}
	post := p.Chain("POSTROUTING")
	got, err := p.Rule(post.Rules[11], "POSTROUTING")
	if want := "-A POSTROUTING -s 10.7.0.0/16 -p udp -j SNAT --to-source 192.0.2.1:2000-3000 --random-fully --persistent"; err != nil || got != want {
		t.Errorf("rule 12 of POSTROUTING: %q, %v; want %q", got, err, want)
	}
	if name, chain := p.JumpTarget(post.Rules[3]); name != "GOTO-ME" || !chain || !p.Goto(post.Rules[3]) {
		t.Errorf("rule 4 of POSTROUTING goes to %q (chain %v, goto %v), want goto GOTO-ME", name, chain, p.Goto(post.Rules[3]))
	}
}

// FuzzParse feeds RulesDigest, Parse, Rule, JumpTarget and SetRandomFully arbitrary
// tables: they may refuse one, never panic or read out of bounds.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/shapes.nat.bin"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tab := tableFrom(data)
		if tab == nil {
			return
		}
		tab.RulesDigest()
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
	})
}
