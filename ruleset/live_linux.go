//go:build linux

package ruleset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/tool"
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
	run := opts.runner()
	rs := &Ruleset{}
	d, nftErr := readNftDump(opts)
	if nftErr == nil {
		nrs := fromNftDump(d)
		if bin, err := attachIptablesNftText(ctx, run, nrs); err != nil {
			nrs.readError(natrule.IptablesNFT, bin, err)
		}
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

// readLegacy merges the iptables-legacy rules into rs and reports whether
// any source answered. A source that fails is a warning. With
// LegacyDirect the IPv4 nat table is read through the kernel even where no
// save tool is installed (rules another image's iptables wrote, on a host
// without iptables-legacy): then a table the kernel interface cannot read
// whole is a warning too.
func readLegacy(ctx context.Context, opts ReadOptions, run tool.Runner, rs *Ruleset) bool {
	read := false
	v4 := legacyIPv4Save(ctx, run)
	bins := legacySaveBinaries(ctx, run)
	if opts.LegacyDirect && !slices.Contains(bins, v4) {
		bins = append([]string{v4}, bins...)
	}
	for _, bin := range bins {
		var lrs *Ruleset
		err := errNotDirect
		if opts.LegacyDirect && bin == v4 {
			lrs, err = readDirect(opts.NS)
		}
		if err != nil {
			if _, lerr := run.LookPath(bin); lerr != nil && !errors.Is(err, errNotDirect) {
				if !errors.Is(err, errNoNat) {
					rs.readError(natrule.IptablesLegacy, DirectSource, fmt.Errorf("%w; %s is not installed to read it instead", err, bin))
				}
				continue
			}
			lrs, err = readSave(ctx, run, bin)
		}
		if err != nil {
			rs.readError(natrule.IptablesLegacy, bin, err)
			continue
		}
		if lrs == nil {
			continue
		}
		read = true
		for i := range lrs.Rules {
			lrs.Rules[i].Backend, lrs.Rules[i].Line = natrule.IptablesLegacy, 0
		}
		for i := range lrs.Chains {
			lrs.Chains[i].Backend = natrule.IptablesLegacy
		}
		for i := range lrs.Jumps {
			lrs.Jumps[i].Backend = natrule.IptablesLegacy
		}
		version := ""
		if lrs.dumps[0].Direct != nil {
			version = IptablesVersion(ctx, run, bin) // a save prints it in its header
		}
		for i := range lrs.Sources {
			lrs.Sources[i].Backend, lrs.Sources[i].Where, lrs.Sources[i].Format = natrule.IptablesLegacy, bin, "iptables-save"
			if lrs.dumps[0].Direct != nil {
				lrs.Sources[i].Where, lrs.Sources[i].Format, lrs.Sources[i].Version = DirectSource, "xtables", version
			}
		}
		rs.merge(lrs)
	}
	return read
}

// errNotDirect marks a read not tried through the kernel interface.
var errNotDirect = errors.New("not read directly")

// legacyIPv4Save is the tool that saves the IPv4 iptables-legacy tables.
func legacyIPv4Save(ctx context.Context, run tool.Runner) string {
	save, _ := natrule.LegacyTools(ctx, run, natrule.IPv4)
	return save
}

// legacySaveBinaries returns the tools that dump iptables-legacy rules here
// (natrule.LegacyTools), for IPv4 and IPv6.
func legacySaveBinaries(ctx context.Context, run tool.Runner) []string {
	var out []string
	for _, fam := range []Family{natrule.IPv4, natrule.IPv6} {
		save, _ := natrule.LegacyTools(ctx, run, fam)
		if _, err := run.LookPath(save); err == nil {
			out = append(out, save)
		}
	}
	return out
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
// table, seconds on a 100,000-rule node. On error it names the tool.
func attachIptablesNftText(ctx context.Context, run tool.Runner, rs *Ruleset) (string, error) {
	chains := map[Family][]string{}
	for _, r := range rs.Rules {
		if r.Backend == natrule.IptablesNFT && r.Table == "nat" && !slices.Contains(chains[r.Family], r.Chain) {
			chains[r.Family] = append(chains[r.Family], r.Chain)
		}
	}
	for fam, names := range chains {
		bin, _ := natrule.Tool(natrule.IptablesNFT, fam)
		srs, err := listChains(ctx, run, bin, names)
		if err != nil {
			return bin, err
		}
		if srs == nil {
			continue
		}
		if err := matchSaveLines(rs, srs, fam, bin); err != nil {
			return bin, err
		}
		version := IptablesVersion(ctx, run, bin)
		for i := range rs.Sources {
			if rs.Sources[i].Backend == natrule.IptablesNFT && version != "" {
				rs.Sources[i].Version = version
			}
		}
	}
	return "", nil
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
// and comment of the line at the same chain and position in srs.
func matchSaveLines(rs, srs *Ruleset, fam Family, bin string) error {
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
		if r.Backend != natrule.IptablesNFT || r.Family != fam || r.Table != "nat" {
			continue
		}
		s, ok := lines[pkey{r.Chain, r.Position}]
		if !ok || s.NAT.Action != r.NAT.Action {
			return fmt.Errorf("%s: no matching %s line for %s", bin, bin, r.Label())
		}
		r.Text, r.Match = s.Text, s.Match
		if s.Comment != "" {
			r.Comment = s.Comment
		}
	}
	return nil
}
