//go:build linux

package ruleset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/xtables"
)

// DirectSource is Source.Where of iptables-legacy IPv4 rules read through
// the kernel interface (ReadOptions.LegacyDirect); DirectSource6 of IPv6
// rules.
const (
	DirectSource  = "IPT_SO_GET_ENTRIES"
	DirectSource6 = "IP6T_SO_GET_ENTRIES"
)

// directSource is DirectSource or DirectSource6.
func directSource(fam Family) string {
	if fam == natrule.IPv6 {
		return DirectSource6
	}
	return DirectSource
}

// XtablesFamily is fam as package xtables names it.
func XtablesFamily(fam Family) xtables.Family {
	if fam == natrule.IPv6 {
		return xtables.IPv6
	}
	return xtables.IPv4
}

// readDirect reads the nat table of iptables-legacy (fam IPv4) or
// ip6tables-legacy (IPv6) through the kernel interface: the chains, every
// jump between them (with the jumping rule's comment), and the rules of
// each chain that holds a MASQUERADE or SNAT target, printed as the save
// tool prints them and parsed like its output. It fails, for the caller to
// fall back to the save tool, when such a chain holds a rule xtables cannot
// print (xtables.ErrUnsupported) or the kernel interface cannot be used. A
// namespace without any table of the family gives nil, nil, as the save
// tool prints nothing for it; one with other tables but no nat table fails
// with errNoNat: the save tool prints them (raw's NOTRACK rules, which the
// DNS scan reads).
func readDirect(ns *netns.NS, fam Family) (*Ruleset, error) {
	t, err := xtables.ReadTable(ns, XtablesFamily(fam), "nat")
	if errors.Is(err, xtables.ErrNoTable) {
		switch names, lerr := xtables.Tables(ns, XtablesFamily(fam)); {
		case lerr != nil:
			return nil, lerr
		case len(names) == 0:
			return nil, nil
		}
		return nil, errNoNat
	}
	if err != nil {
		return nil, err
	}
	p, err := xtables.Parse(t)
	if err != nil {
		return nil, err
	}
	keep := ancestors(p, natChains(p))
	var b bytes.Buffer
	rendered, err := directSave(&b, p, natChains(p), keep)
	if err != nil {
		return nil, err
	}
	doc := b.String()
	rs, err := ParseIptablesSave(doc, directSource(fam))
	if err != nil {
		return nil, fmt.Errorf("reading the rules printed from the kernel's table: %w", err)
	}
	rs.setFamily(fam)                                 // the document has no header to say it
	rs.Chains = slices.Grow(rs.Chains, len(p.Chains)) // 36,000 on a kube-proxy node
	for _, c := range p.Chains {
		if !keep[c.Name] && c.Hook < 0 { // declared in doc otherwise
			rs.Chains = append(rs.Chains, Chain{Family: fam, Table: "nat", Name: c.Name})
		}
	}
	rs.Jumps = directJumps(rs.Jumps, fam, p, rendered, keep)
	rs.dumps = []Dump{{Tool: directSource(fam), Direct: p, Family: fam}}
	return rs, nil
}

// keepText replaces a nat table dump of rs read directly with the lines of
// it keep accepts (ReadOptions.LegacyKeep), letting go of its entries; a
// table with a rule xtables cannot print is let go too, for LegacyTexts to
// ask the save tool for.
func keepText(rs *Ruleset, keep func(string) bool) {
	for i, d := range rs.dumps {
		if d.Direct == nil || keep == nil {
			continue
		}
		text, err := directTableText(d.Direct, keep)
		if err != nil {
			rs.dumps[i] = Dump{Tool: directSource(d.Family), Family: d.Family, natTool: true}
			continue
		}
		rs.dumps[i] = Dump{Tool: directSource(d.Family) + " nat", Text: text, Family: d.Family, natText: true}
	}
}

// errNoNat is readDirect's answer for a namespace whose legacy tables of
// the family do not include nat: no source-NAT rule, but other rules a scan
// may want from the save tool.
var errNoNat = errors.New("no iptables-legacy nat table, but other tables")

// ancestors names the chains from which a chain of chains can be reached
// through jumps and gotos, those chains included: the only chains whose
// jumps hook resolution and attribution follow (backwards from the NAT
// rules). A kube-proxy table's 100,000 service jumps lead elsewhere.
func ancestors(p *xtables.Parsed, chains []string) map[string]bool {
	callers := make([][]int32, len(p.Chains))
	for from, c := range p.Chains {
		for _, i := range c.Rules {
			if to := p.JumpChain(i); to >= 0 {
				callers[to] = append(callers[to], int32(from))
			}
		}
	}
	keep := map[string]bool{}
	var queue []int32
	for _, name := range chains {
		keep[name] = true
	}
	for i, c := range p.Chains {
		if keep[c.Name] {
			queue = append(queue, int32(i))
		}
	}
	for len(queue) > 0 {
		to := queue[0]
		queue = queue[1:]
		for _, from := range callers[to] {
			if name := p.Chains[from].Name; !keep[name] {
				keep[name] = true
				queue = append(queue, from)
			}
		}
	}
	return keep
}

// natChains names the chains of p that hold a MASQUERADE or SNAT target.
func natChains(p *xtables.Parsed) []string {
	var out []string
	for _, c := range p.Chains {
		for _, i := range c.Rules {
			if name := p.Target(i).Name; name == "MASQUERADE" || name == "SNAT" {
				out = append(out, c.Name)
				break
			}
		}
	}
	return out
}

// directSave prints to b p as an iptables-save document of the nat table
// that declares the built-in chains and the chains of keep, and holds the
// rules of the named chains, each line as iptables-legacy-save prints it;
// the set of chains printed is returned. A rule xtables cannot print fails
// it with xtables.ErrUnsupported.
func directSave(b *bytes.Buffer, p *xtables.Parsed, chains []string, keep map[string]bool) (map[string]bool, error) {
	b.WriteString("*nat\n")
	for _, c := range p.Chains {
		switch {
		case c.Hook >= 0:
			b.WriteString(":" + c.Name + " " + c.Policy + " [0:0]\n")
		case keep[c.Name]:
			b.WriteString(":" + c.Name + " - [0:0]\n")
		}
	}
	rendered := map[string]bool{}
	for _, name := range chains {
		c := p.Chain(name)
		if c == nil || rendered[name] {
			continue
		}
		for _, i := range c.Rules {
			if to, chain := p.JumpTarget(i); chain && !keep[to] {
				// A jump out of a NAT chain to one that leads to none: the
				// parser needs it declared to read it as a jump.
				b.WriteString(":" + to + " - [0:0]\n")
				keep[to] = true
			}
			if err := p.WriteRule(b, i, name); err != nil {
				return nil, fmt.Errorf("chain %s: %w", name, err)
			}
			b.WriteByte('\n')
		}
		rendered[name] = true
	}
	b.WriteString("COMMIT\n")
	return rendered, nil
}

// directJumps appends to out the jumps and gotos of the chains directSave
// did not print into the chains of keep, those into a printed chain with
// the jumping rule's comment (Attribute reads no other).
func directJumps(out []Jump, fam Family, p *xtables.Parsed, rendered, keep map[string]bool) []Jump {
	for _, c := range p.Chains {
		if rendered[c.Name] || !keep[c.Name] && c.Hook < 0 {
			continue // a chain that reaches no NAT chain jumps to none
		}
		for _, i := range c.Rules {
			to, chain := p.JumpTarget(i)
			if !chain || !keep[to] {
				continue
			}
			j := Jump{Backend: natrule.IptablesLegacy, Family: fam, Table: "nat", From: c.Name, To: to}
			if rendered[to] {
				j.Comment = directComment(p, i)
			}
			out = append(out, j)
		}
	}
	return out
}

// directComment is the comment of entry i's comment matches, joined as
// splitRule joins them.
func directComment(p *xtables.Parsed, i int) string {
	var comments []string
	for _, m := range p.Matches(i) {
		if m.Name == "comment" {
			comments = append(comments, xtables.Comment(m))
		}
	}
	return strings.Join(comments, "; ")
}

// LegacyTexts returns the iptables-save text of the iptables-legacy tables
// named, for scans that read other rules than the source-NAT read's (the
// audit's DNS path: nat and raw). A dump a save tool printed holds every
// table and is returned as it is. For the nat table read through the
// kernel interface (d.Direct) the nat table is printed from the entries
// already read — only the rule lines keep accepts (nil: all), under its
// "*nat" line: a scan that looks for a few words need not hold the 15 MB
// of a kube-proxy table; a nat table the read already printed
// (ReadOptions.LegacyKeep) is returned as it was kept, keep not applied
// again — and every other table is asked of
// the family's save tool (iptables-legacy-save or ip6tables-legacy-save,
// `-t TABLE`: it reads only that table) when ns has it — asking for a
// table the namespace lacks would create it; a nat table with a rule
// xtables cannot print is asked of it too. The tools run through run (nil:
// inside ns). A tool that fails, or is not installed when a table needs
// it, is an error, named, and the texts read before it are still returned.
func LegacyTexts(ctx context.Context, ns *netns.NS, run tool.Runner, d Dump, keep func(line string) bool, tables ...string) ([]Dump, error) {
	if d.Direct == nil && !d.natText && !d.natTool {
		return []Dump{d}, nil
	}
	if run == nil {
		run = tool.Exec{NS: ns}
	}
	fam := d.Family
	xf := XtablesFamily(fam)
	var out []Dump
	for _, table := range tables {
		switch {
		case table == "nat" && d.natText:
			out = append(out, Dump{Tool: d.Tool, Text: d.Text})
			continue
		case table == "nat" && d.Direct != nil:
			if text, err := directTableText(d.Direct, keep); err == nil {
				out = append(out, Dump{Tool: directSource(fam) + " nat", Text: text})
				continue
			}
		}
		if ok, err := xtables.HasTable(ns, xf, table); err != nil || !ok {
			if err != nil {
				return out, fmt.Errorf("listing the %s tables: %w", xf.Tool(), err)
			}
			continue
		}
		bin, _ := natrule.LegacyTools(ctx, run, fam)
		if _, err := run.LookPath(bin); err != nil {
			return out, fmt.Errorf("the %s table is not read: %s is not installed (%w)", table, bin, err)
		}
		text, err := run.Run(ctx, tool.Command(bin, "-t", table))
		if err != nil {
			return out, fmt.Errorf("%s -t %s: %w", bin, table, err)
		}
		out = append(out, Dump{Tool: bin + " -t " + table, Text: string(text)})
	}
	return out, nil
}

// directTableText prints the rules of every chain of p that keep accepts
// (nil: all), each as iptables-legacy-save prints it, under a "*nat" line
// and before "COMMIT". A rule xtables cannot print fails it.
func directTableText(p *xtables.Parsed, keep func(string) bool) (string, error) {
	var b bytes.Buffer
	if keep == nil {
		b.Grow(textPerEntry * len(p.Entries))
	}
	b.WriteString("*nat\n")
	for _, c := range p.Chains {
		for _, i := range c.Rules {
			mark := b.Len()
			if err := p.WriteRule(&b, i, c.Name); err != nil {
				return "", fmt.Errorf("chain %s: %w", c.Name, err)
			}
			if keep != nil && !keep(string(b.Bytes()[mark:])) {
				b.Truncate(mark) // the buffer is reused: one small string per rule is all the garbage
				continue
			}
			b.WriteByte('\n')
		}
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// textPerEntry is about what iptables-legacy-save prints per entry of a
// kube-proxy table (15 MB for 100,000 rules and 36,000 chains): the
// whole text grows once at most.
const textPerEntry = 110
