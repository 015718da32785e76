//go:build linux

package ruleset

import (
	"fmt"
	"os"
	"strings"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/xtables"
)

// DirectSource is Source.Where of iptables-legacy rules read through the
// kernel interface (ReadOptions.LegacyDirect).
const DirectSource = "IPT_SO_GET_ENTRIES"

// readDirect reads the IPv4 nat table of iptables-legacy through the kernel
// interface: the chains, every jump between them (with the jumping rule's
// comment), and the rules of each chain that holds a MASQUERADE or SNAT
// target, printed as iptables-legacy-save prints them and parsed like its
// output. It fails, for the caller to fall back to iptables-legacy-save,
// when such a chain holds a rule xtables cannot print (xtables.ErrUnsupported)
// or the kernel interface cannot be used. A namespace without the table
// gives nil, nil, as the save tool prints nothing for it.
func readDirect(ns *netns.NS) (*Ruleset, error) {
	if ok, err := hasNatTable(ns); err != nil || !ok {
		return nil, err
	}
	s, err := xtables.Open(ns)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	t, err := s.Get("nat")
	if err != nil {
		return nil, err
	}
	p, err := xtables.Parse(t)
	if err != nil {
		return nil, err
	}
	doc, rendered, err := DirectSave(p, natChains(p))
	if err != nil {
		return nil, err
	}
	rs, err := ParseIptablesSave(doc, DirectSource)
	if err != nil {
		return nil, fmt.Errorf("reading the rules printed from the kernel's table: %w", err)
	}
	rs.Jumps = append(rs.Jumps, directJumps(p, rendered)...)
	rs.dumps = []Dump{{Tool: DirectSource, Direct: p}}
	return rs, nil
}

// hasNatTable reports whether ns has an iptables-legacy nat table, from
// the table names the kernel lists (what iptables-legacy-save reads):
// asking for a table that does not exist would create it.
func hasNatTable(ns *netns.NS) (bool, error) {
	var names []byte
	err := ns.Do(func() error {
		var err error
		names, err = os.ReadFile("/proc/thread-self/net/ip_tables_names")
		if os.IsNotExist(err) {
			return nil // ip_tables is not loaded: no legacy table at all
		}
		return err
	})
	if err != nil {
		return false, err
	}
	for _, n := range strings.Fields(string(names)) {
		if n == "nat" {
			return true, nil
		}
	}
	return false, nil
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

// DirectSave prints p as an iptables-save document of the nat table that
// declares every chain and holds the rules of the named chains, each line
// as iptables-legacy-save prints it; the set of chains printed is
// returned. A rule xtables cannot print fails it with
// xtables.ErrUnsupported.
func DirectSave(p *xtables.Parsed, chains []string) (string, map[string]bool, error) {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range p.Chains {
		policy := c.Policy
		if c.Hook < 0 {
			policy = "-"
		}
		b.WriteString(":" + c.Name + " " + policy + " [0:0]\n")
	}
	rendered := map[string]bool{}
	for _, name := range chains {
		c := p.Chain(name)
		if c == nil || rendered[name] {
			continue
		}
		for _, i := range c.Rules {
			line, err := p.Rule(i, name)
			if err != nil {
				return "", nil, fmt.Errorf("chain %s: %w", name, err)
			}
			b.WriteString(line + "\n")
		}
		rendered[name] = true
	}
	b.WriteString("COMMIT\n")
	return b.String(), rendered, nil
}

// directJumps lists the jumps and gotos of the chains DirectSave did not
// print, with the jumping rule's comment.
func directJumps(p *xtables.Parsed, rendered map[string]bool) []Jump {
	var out []Jump
	for _, c := range p.Chains {
		if rendered[c.Name] {
			continue
		}
		for _, i := range c.Rules {
			to, chain := p.JumpTarget(i)
			if !chain {
				continue
			}
			j := Jump{Backend: natrule.IptablesLegacy, Family: natrule.IPv4, Table: "nat", From: c.Name, To: to}
			var comments []string
			for _, m := range p.Matches(i) {
				if m.Name == "comment" {
					comments = append(comments, xtables.Comment(m))
				}
			}
			j.Comment = strings.Join(comments, "; ") // as splitRule joins them
			out = append(out, j)
		}
	}
	return out
}
