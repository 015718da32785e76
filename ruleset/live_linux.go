//go:build linux

package ruleset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// Read reads every source-NAT rule of a network namespace: nftables (native
// and iptables-nft) over netlink in one consistent dump, and iptables-legacy
// through iptables-legacy-save / ip6tables-legacy-save when installed. Rules
// of iptables-nft get their iptables-nft-save line as Text. Owners are
// attributed.
//
// Reading nftables needs CAP_NET_ADMIN in the namespace; the error then
// wraps os.ErrPermission.
func Read(ctx context.Context, opts ReadOptions) (*Ruleset, error) {
	run := opts.Runner
	if run == nil {
		run = ExecRunner{}
	}
	rs := &Ruleset{}
	d, nftErr := readNftDump(opts.NetNSFd)
	if nftErr == nil {
		nrs := fromNftDump(d)
		if err := attachIptablesNftText(ctx, run, nrs); err != nil {
			nrs.Warnings = append(nrs.Warnings, err.Error())
		}
		rs.merge(nrs)
	}
	legacyRead := false
	if !opts.SkipLegacy {
		for _, bin := range legacySaveBinaries(ctx, run) {
			lrs, err := readSave(ctx, run, bin)
			if err != nil {
				rs.Warnings = append(rs.Warnings, err.Error())
				continue
			}
			if lrs == nil {
				continue
			}
			legacyRead = true
			for i := range lrs.Rules {
				lrs.Rules[i].Backend, lrs.Rules[i].Line = IptablesLegacy, 0
			}
			for i := range lrs.Chains {
				lrs.Chains[i].Backend = IptablesLegacy
			}
			for i := range lrs.Jumps {
				lrs.Jumps[i].Backend = IptablesLegacy
			}
			for i := range lrs.Sources {
				lrs.Sources[i].Backend, lrs.Sources[i].Where, lrs.Sources[i].Format = IptablesLegacy, bin, "iptables-save"
			}
			rs.merge(lrs)
		}
	}
	if nftErr != nil {
		if !legacyRead {
			return nil, fmt.Errorf("reading nftables over netlink: %w", nftErr)
		}
		rs.Warnings = append(rs.Warnings, fmt.Sprintf("nftables not read: %v", nftErr))
	}
	rs.resolveHooks()
	Attribute(rs)
	return rs, nil
}

// legacySaveBinaries returns the tools that dump iptables-legacy rules:
// iptables-legacy-save and ip6tables-legacy-save, or, on systems without them
// (iptables before 1.8, or a legacy-only build), iptables-save and
// ip6tables-save when they are not the nf_tables flavour.
func legacySaveBinaries(ctx context.Context, run Runner) []string {
	var out []string
	for _, v := range []string{"iptables", "ip6tables"} {
		if _, err := run.LookPath(v + "-legacy-save"); err == nil {
			out = append(out, v+"-legacy-save")
			continue
		}
		if _, err := run.LookPath(v + "-save"); err != nil {
			continue
		}
		ver, err := run.Run(ctx, v+"-save", "--version")
		if err == nil && !bytes.Contains(ver, []byte("nf_tables")) {
			out = append(out, v+"-save")
		}
	}
	return out
}

// readSave runs an iptables save binary and parses its output; nil, nil when
// the binary is missing or has nothing to say.
func readSave(ctx context.Context, run Runner, bin string, args ...string) (*Ruleset, error) {
	if _, err := run.LookPath(bin); err != nil {
		return nil, nil
	}
	out, err := run.Run(ctx, bin, args...)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	rs, err := ParseIptablesSave(string(out), bin)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) && pe.Line == 0 {
			return nil, nil // only comments: no tables loaded
		}
		return nil, err
	}
	return rs, nil
}

// fromNftDump turns a netlink dump into a Ruleset.
func fromNftDump(d *nftDump) *Ruleset {
	rs := &Ruleset{Generation: d.gen, Chains: d.chains}
	type ckey struct {
		fam          Family
		table, chain string
	}
	chainIdx := make(map[ckey]int, len(d.chains))
	for i, c := range d.chains {
		chainIdx[ckey{c.Family, c.Table, c.Name}] = i
	}
	// Tables that iptables-nft made: xt expressions, or the upper-case
	// built-in chains of nat/filter/mangle/raw/security.
	ipt := map[ckey]bool{} // chain "" = table
	for _, c := range d.chains {
		if _, ok := builtinHooks[c.Name]; ok && c.Hook != "" && iptablesNftTables[c.Table] && (c.Family == "ip" || c.Family == "ip6") {
			ipt[ckey{c.Family, c.Table, ""}] = true
		}
	}
	for _, r := range d.rules {
		fam := r.family
		ci, ok := chainIdx[ckey{fam, r.table, r.chain}]
		if !ok {
			continue
		}
		c := &rs.Chains[ci]
		c.Rules++
		pos := c.Rules
		for _, to := range r.jumps {
			rs.Jumps = append(rs.Jumps, Jump{Family: fam, Table: c.Table, From: c.Name, To: to})
		}
		if r.nat == nil {
			continue
		}
		nr := r.nat
		isNAT := false
		for _, e := range nr.Exprs {
			switch e := e.(type) {
			case *expr.Masq:
				isNAT = true
			case *expr.NAT:
				isNAT = isNAT || e.Type == expr.NATTypeSourceNAT
			case *expr.Target:
				ipt[ckey{fam, c.Table, ""}] = true
				isNAT = isNAT || e.Name == "MASQUERADE" || e.Name == "SNAT"
			case *expr.Match:
				ipt[ckey{fam, c.Table, ""}] = true
			}
		}
		if !isNAT {
			continue
		}
		desc := describeExprs(fam, nr.Exprs, nr.UserData)
		if desc.nat == nil {
			continue
		}
		text := strings.Join(append(append([]string(nil), desc.match...), desc.stmts...), " ")
		text = strings.TrimSpace(text + " " + desc.natText)
		if desc.comment != "" {
			text += fmt.Sprintf(" comment %q", desc.comment)
		}
		rule := Rule{
			Family: fam, Table: c.Table, Chain: c.Name, Hook: c.Hook, Position: pos, Handle: nr.Handle,
			Match: strings.Join(desc.match, " "), NAT: *desc.nat, FlagsKnown: true, Comment: desc.comment,
			Text: text, XT: desc.xt, Raw: &NftRaw{Rule: nr, Complete: r.complete},
		}
		if desc.warn != "" {
			rs.Warnings = append(rs.Warnings, fmt.Sprintf("%s %s %s handle %d: %s", fam, c.Table, c.Name, nr.Handle, desc.warn))
		}
		rs.Rules = append(rs.Rules, rule)
	}
	backend := func(f Family, table string) Backend {
		if ipt[ckey{f, table, ""}] {
			return IptablesNft
		}
		return Nftables
	}
	setBackends(rs, backend)
	counts := map[Backend]int{}
	for _, r := range rs.Rules {
		counts[r.Backend]++
	}
	rs.Sources = append(rs.Sources, Source{Backend: Nftables, Where: "netlink", Format: "netlink", Rules: counts[Nftables], Scanned: len(d.rules)})
	if counts[IptablesNft] > 0 {
		rs.Sources = append(rs.Sources, Source{Backend: IptablesNft, Where: "netlink", Format: "netlink", Rules: counts[IptablesNft]})
	}
	return rs
}

// attachIptablesNftText replaces the rendered nft text of iptables-nft rules
// with their iptables-nft-save line (what iptables-restore -R takes back),
// matched by family, chain and position.
func attachIptablesNftText(ctx context.Context, run Runner, rs *Ruleset) error {
	need := map[Family]bool{}
	for _, r := range rs.Rules {
		if r.Backend == IptablesNft && r.Table == "nat" {
			need[r.Family] = true
		}
	}
	for fam := range need {
		bin := "iptables-nft-save"
		if fam == "ip6" {
			bin = "ip6tables-nft-save"
		}
		srs, err := readSave(ctx, run, bin, "-t", "nat")
		if err != nil {
			return err
		}
		if srs == nil {
			continue
		}
		type pkey struct {
			chain string
			pos   int
		}
		lines := map[pkey]*Rule{}
		for i := range srs.Rules {
			lines[pkey{srs.Rules[i].Chain, srs.Rules[i].Position}] = &srs.Rules[i]
		}
		for i := range rs.Rules {
			r := &rs.Rules[i]
			if r.Backend != IptablesNft || r.Family != fam || r.Table != "nat" {
				continue
			}
			s, ok := lines[pkey{r.Chain, r.Position}]
			if !ok || s.NAT.Action != r.NAT.Action {
				return fmt.Errorf("%s: no matching %s line for %s", bin, bin, r.Key())
			}
			r.Text, r.Match = s.Text, s.Match
			if s.Comment != "" {
				r.Comment = s.Comment
			}
		}
		for i := range rs.Sources {
			if rs.Sources[i].Backend == IptablesNft && len(srs.Sources) > 0 {
				rs.Sources[i].Version = srs.Sources[0].Version
			}
		}
	}
	return nil
}
