//go:build linux

package ruleset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/snatrace/snatrace/internal/background"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/xtables"
)

// Read reads every source-NAT rule of a network namespace: nftables (native
// and iptables-nft) over netlink in one consistent dump, and iptables-legacy
// through iptables-legacy-save / ip6tables-legacy-save when installed (or
// the kernel interface: ReadOptions.LegacyDirect). Rules
// of iptables-nft get their iptables-nft-save line as Text. Owners are
// attributed.
//
// Reading nftables needs CAP_NET_ADMIN in the namespace; the error then
// wraps os.ErrPermission.
func Read(ctx context.Context, opts ReadOptions) (*Ruleset, error) {
	run := opts.runner()
	rs := &Ruleset{}
	nrs, nftErr := readNft(ctx, opts, run)
	if nftErr == nil {
		rs.merge(nrs)
	}
	legacyRead := false
	if !opts.SkipLegacy {
		legacyRead = readLegacy(ctx, opts, run, rs)
	}
	if nftErr != nil {
		if !legacyRead {
			return nil, fmt.Errorf("reading nftables over netlink: %w", nftErr)
		}
		rs.readError(natrule.Nftables, "netlink", nftErr)
	}
	rs.resolveHooks()
	Attribute(rs)
	return rs, nil
}

// nftTextTries bounds the reads of readNft while commits keep coming
// between its dump and its listing of the iptables-nft chains.
const nftTextTries = 5

// readNft reads the nftables rules, and gives the iptables-nft ones the
// iptables text of the same generation: a commit between the dump and the
// listing of their chains pairs lines with the wrong rules, so then both
// are read again. When commits keep coming, the rules keep the rendered
// nft text and a warning says why.
func readNft(ctx context.Context, opts ReadOptions, run tool.Runner) (*Ruleset, error) {
	for try := 1; ; try++ {
		d, err := readNftDump(opts)
		if err != nil {
			return nil, err
		}
		nrs := fromNftDump(d)
		bin, listed, err := attachIptablesNftText(ctx, run, nrs)
		switch {
		case err != nil:
			nrs = fromNftDump(d) // no line of a failed pairing kept
			nrs.readError(natrule.IptablesNFT, bin, err)
			return nrs, nil
		case !listed:
			return nrs, nil
		}
		if gen, err := nftGeneration(opts); err == nil && gen == d.gen {
			return nrs, nil
		}
		if try == nftTextTries {
			nrs = fromNftDump(d)
			nrs.readError(natrule.IptablesNFT, "iptables-nft", fmt.Errorf("the nftables ruleset kept changing while its iptables-nft chains were listed (%d tries)", try))
			return nrs, nil
		}
	}
}

// readLegacy merges the iptables-legacy rules into rs and reports whether
// any source answered. A source that fails is a warning. With
// LegacyDirect each family's nat table is read through the kernel even
// where no save tool is installed (rules another image's iptables wrote,
// on a host without iptables-legacy).
func readLegacy(ctx context.Context, opts ReadOptions, run tool.Runner, rs *Ruleset) bool {
	read := false
	for _, fam := range []Family{natrule.IPv4, natrule.IPv6} {
		bin, _ := natrule.LegacyTools(ctx, run, fam)
		if _, err := run.LookPath(bin); err != nil && !opts.LegacyDirect {
			continue
		}
		version := directVersion(ctx, opts, run, bin, fam)
		lrs, where, err := readLegacySource(ctx, opts.NS, run, bin, fam, opts.LegacyDirect)
		v := version()
		if err != nil {
			rs.readError(natrule.IptablesLegacy, where, err)
			continue
		}
		if lrs == nil {
			continue
		}
		read = true
		markLegacy(bin, v, lrs)
		keepText(lrs, opts.LegacyKeep) // before the next family's table is read
		rs.merge(lrs)
	}
	return read
}

// directVersion asks, beside a read of fam's nat table through the
// kernel interface, for the version bin would print in its header (a
// table read so is labelled with it); "" where there is no such read.
func directVersion(ctx context.Context, opts ReadOptions, run tool.Runner, bin string, fam Family) (wait func() string) {
	if opts.LegacyDirect {
		if ok, _ := xtables.HasTable(opts.NS, XtablesFamily(fam), "nat"); ok {
			return background.Start(func() string { return IptablesVersion(ctx, run, bin) })
		}
	}
	return func() string { return "" }
}

// readLegacySource reads the rules bin saves, those of family fam: with
// direct, the nat table through the kernel interface first, and bin only
// when that fails and bin is installed. where names the source an error
// comes from. nil, nil means nothing to merge: no tables, or legacy tables
// without nat and no tool to print them.
func readLegacySource(ctx context.Context, ns *netns.NS, run tool.Runner, bin string, fam Family, direct bool) (lrs *Ruleset, where string, err error) {
	if direct {
		lrs, err = readDirect(ns, fam)
		if err == nil {
			return lrs, directSource(fam), nil
		}
		if _, lerr := run.LookPath(bin); lerr != nil {
			if errors.Is(err, errNoNat) {
				return nil, directSource(fam), nil
			}
			return nil, directSource(fam), fmt.Errorf("%w; %s is not installed to read it instead", err, bin)
		}
	}
	lrs, err = readSave(ctx, run, bin)
	return lrs, bin, err
}

// markLegacy labels what bin's source read as iptables-legacy, and its
// sources with where they were read (the tool, or the kernel interface
// with version, the one the tool would print in its header).
func markLegacy(bin, version string, lrs *Ruleset) {
	for i := range lrs.Rules {
		lrs.Rules[i].Backend, lrs.Rules[i].Line = natrule.IptablesLegacy, 0
	}
	for i := range lrs.Chains {
		lrs.Chains[i].Backend = natrule.IptablesLegacy
	}
	for i := range lrs.Jumps {
		lrs.Jumps[i].Backend = natrule.IptablesLegacy
	}
	d := lrs.dumps[0]
	direct := d.Family != ""
	for i := range lrs.Sources {
		lrs.Sources[i].Backend, lrs.Sources[i].Where, lrs.Sources[i].Format = natrule.IptablesLegacy, bin, "iptables-save"
		if direct {
			lrs.Sources[i].Where, lrs.Sources[i].Format, lrs.Sources[i].Version = directSource(d.Family), "xtables", version
		}
	}
}

// readSave runs an iptables save binary and parses its output; nil, nil when
// the binary is missing or has nothing to say.
func readSave(ctx context.Context, run tool.Runner, bin string, args ...string) (*Ruleset, error) {
	if _, err := run.LookPath(bin); err != nil {
		return nil, nil
	}
	out, err := run.Run(ctx, tool.Command(bin, args...))
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	text := string(out) // one copy for the parse and the dump: 15 MB at 100,000 rules
	rs, err := ParseIptablesSave(text, bin)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) && pe.Line == 0 {
			return nil, nil // only comments: no tables loaded
		}
		return nil, err
	}
	rs.dumps = []Dump{{Tool: bin, Text: text}}
	return rs, nil
}

// attachIptablesNftText replaces the rendered nft text of iptables-nft rules
// with their iptables line (what iptables-restore -R takes back), matched by
// family, chain and position. It lists only the chains that hold such rules
// (`iptables-nft -t nat -S CHAIN`): iptables-nft-save would read the whole
// table, seconds on a 100,000-rule node. listed says whether it listed
// any chain (readNft then checks the generation); on error bin names the
// tool.
func attachIptablesNftText(ctx context.Context, run tool.Runner, rs *Ruleset) (bin string, listed bool, err error) {
	chains := map[Family][]string{}
	for _, r := range rs.Rules {
		if r.Backend == natrule.IptablesNFT && r.Table == "nat" && !slices.Contains(chains[r.Family], r.Chain) {
			chains[r.Family] = append(chains[r.Family], r.Chain)
		}
	}
	for fam, names := range chains {
		bin, _ = natrule.Tool(natrule.IptablesNFT, fam)
		srs, err := listChains(ctx, run, bin, names)
		if err != nil {
			return bin, listed, err
		}
		if srs == nil {
			continue
		}
		listed = true
		if err := matchSaveLines(rs, srs, fam, bin); err != nil {
			return bin, listed, err
		}
		version := IptablesVersion(ctx, run, bin)
		for i := range rs.Sources {
			if rs.Sources[i].Backend == natrule.IptablesNFT && version != "" {
				rs.Sources[i].Version = version
			}
		}
	}
	return "", listed, nil
}

// listChains runs `bin -t nat -S CHAIN` for each chain and parses the
// lines; nil, nil when bin is not installed.
func listChains(ctx context.Context, run tool.Runner, bin string, chains []string) (*Ruleset, error) {
	if _, err := run.LookPath(bin); err != nil {
		return nil, nil
	}
	var out []byte
	for _, c := range chains {
		b, err := run.Run(ctx, tool.Command(bin, "-t", "nat", "-S", c))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return ParseIptablesSave(string(out), bin)
}

// matchSaveLines gives the iptables-nft rules of fam in rs the text, match
// and comment of the line at the same chain and position in srs, whose NAT
// action and flags must be the rule's; it changes no rule unless every one
// has its line.
func matchSaveLines(rs, srs *Ruleset, fam Family, bin string) error {
	type pkey struct {
		chain string
		pos   int
	}
	lines := map[pkey]*Rule{}
	for i := range srs.Rules {
		lines[pkey{srs.Rules[i].Chain, srs.Rules[i].Position}] = &srs.Rules[i]
	}
	pairs := map[*Rule]*Rule{}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Backend != natrule.IptablesNFT || r.Family != fam || r.Table != "nat" {
			continue
		}
		s, ok := lines[pkey{r.Chain, r.Position}]
		if !ok || !sameNAT(s.NAT, r.NAT) {
			return fmt.Errorf("%s: no matching %s line for %s", bin, bin, r.Label())
		}
		pairs[r] = s
	}
	for r, s := range pairs {
		r.Text, r.Match = s.Text, s.Match
		if s.Comment != "" {
			r.Comment = s.Comment
		}
	}
	return nil
}

// sameNAT reports whether two readings of a rule's NAT have the same action
// and port-choice flags.
func sameNAT(a, b natrule.Mode) bool {
	return a.Action == b.Action && a.Random == b.Random && a.FullyRandom == b.FullyRandom && a.Persistent == b.Persistent
}
