//go:build linux

package ruleset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/nftnl"
)

// NftRaw is the kernel's view of a rule read over netlink: its table, chain,
// handle, expressions and user data, ready for a replace-by-handle.
type NftRaw struct {
	// Rule has Table (name, family), Chain (name), Handle, Exprs and UserData
	// as the kernel returned them.
	Rule *nftables.Rule
	// Complete is false when an expression of the rule has no Go type in
	// google/nftables and is missing from Rule.Exprs: such a rule must not be
	// written back.
	Complete bool
}

// nftDump is one consistent read of the nftables ruleset of a namespace:
// every chain, and the rules of the chains source NAT can run in.
type nftDump struct {
	gen uint32
	// list is the chain list (read-only: it may be a ChainCache's).
	list *chainList
	// reached are the indexes in list.chains of the chains whose rules
	// were read, in the order they were.
	reached []int
	rules   []dumpRule
	// maps are the verdict maps followed (chain: the set's name).
	maps []tableKey
	// cached is true when list came from a ChainCache.
	cached bool
	// torn is true when a dump gave one chain, or one rule of a chain,
	// twice: a transaction linked or unlinked chains or rules while the
	// dump resumed, which the kernel does not always flag (nftnl.Settle).
	// A torn read is repeated whatever the commits around it did.
	torn bool
}

// readNftDump dumps the chains, then the rules of the chains source NAT can
// run in (readReachable), as of one ruleset generation: a read that commits
// overlapped is repeated, unless the commits' events show they touched no
// chain and nothing the read depended on (overlaps).
func readNftDump(opts ReadOptions) (*nftDump, error) {
	c, err := nftnl.Dial(append([]nftnl.Option{nftnl.WithNetNS(opts.NS)}, opts.Nftables...)...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The commits that overlap a read are followed only once one did: the
	// watcher subscribes after the first inconsistent read, for the next.
	var (
		ov *overlaps
		d  *nftDump
	)
	defer func() { ov.close() }()
	harmless := func(before, after uint32) bool {
		if ov == nil {
			if !c.Test() {
				ov = watchOverlaps(opts.NS)
			}
			return false
		}
		return !d.torn && ov.harmless(d, before, after)
	}
	gen, err := c.ConsistentUnless(func() (bool, error) {
		d = &nftDump{}
		intr, err := d.chainList(c, opts.Chains)
		if err != nil {
			return false, err
		}
		intr2, err := d.readReachable(c)
		return intr || intr2, err
	}, harmless)
	if err != nil {
		return nil, fmt.Errorf("reading nftables rules: %w", err)
	}
	d.gen = gen
	if !d.cached {
		opts.Chains.remember(d.list, gen)
	}
	return d, nil
}

// nftGeneration asks the namespace's nftables generation.
func nftGeneration(opts ReadOptions) (uint32, error) {
	c, err := nftnl.Dial(append([]nftnl.Option{nftnl.WithNetNS(opts.NS)}, opts.Nftables...)...)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.Generation()
}

// chainList fills d.list: from cc when it describes the current
// generation, else from a chain dump.
func (d *nftDump) chainList(c *nftnl.Conn, cc *ChainCache) (bool, error) {
	if cc != nil {
		gen, err := c.Generation()
		if err != nil {
			return false, err
		}
		if l, ok := cc.valid(gen); ok {
			d.list, d.cached = l, true
			return false, nil
		}
	}
	return d.readChains(c, cc.sizeHint())
}

// readChains dumps the tables and the chains into d.list; size is the
// number of chains expected (0: unknown).
func (d *nftDump) readChains(c *nftnl.Conn, size int) (bool, error) {
	dormant, intrT, err := readDormant(c)
	if err != nil {
		return false, err
	}
	chains := make([]Chain, 0, size+size/64)
	intr, err := c.DumpEach(unix.NFT_MSG_GETCHAIN, unix.AF_UNSPEC, nil, func(m netlink.Message) error {
		if len(m.Data) < 4 {
			return nil
		}
		ch, err := decodeChain(m.Data)
		if err != nil {
			return err
		}
		chains = append(chains, ch)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("listing nftables chains: %w", err)
	}
	d.torn = nftnl.Repeats(chains, func(c *Chain) tableKey { return tableKey{c.Family, c.Table, c.Name} })
	d.list = newChainList(chains, dormant)
	return intr || intrT || d.torn, nil
}

// readDormant dumps the tables and returns those whose flags say dormant:
// the kernel runs none of their chains (nf_tables_table_disable).
func readDormant(c *nftnl.Conn) (map[tableKey]bool, bool, error) {
	var dormant map[tableKey]bool
	intr, err := c.DumpEach(unix.NFT_MSG_GETTABLE, unix.AF_UNSPEC, nil, func(m netlink.Message) error {
		if len(m.Data) < 4 {
			return nil
		}
		var name string
		var flags uint32
		err := nftnl.Walk(m.Data[4:], func(typ uint16, v []byte) error {
			switch {
			case typ == unix.NFTA_TABLE_NAME:
				name = nftnl.CString(v)
			case typ == unix.NFTA_TABLE_FLAGS && len(v) == 4:
				flags = binary.BigEndian.Uint32(v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("decoding nftables table: %w", err)
		}
		if flags&unix.NFT_TABLE_F_DORMANT != 0 {
			if dormant == nil {
				dormant = map[tableKey]bool{}
			}
			dormant[tableKey{Family(nftnl.FamilyName(m.Data[0])), name, ""}] = true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing nftables tables: %w", err)
	}
	return dormant, intr, nil
}

// decodeChain decodes one NFT_MSG_NEWCHAIN message of a dump.
func decodeChain(data []byte) (Chain, error) {
	if len(data) < 4 {
		return Chain{}, errors.New("decoding nftables chain: message too short")
	}
	fam := Family(nftnl.FamilyName(data[0]))
	ch := Chain{Backend: natrule.Nftables, Family: fam}
	err := nftnl.Walk(data[4:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.NFTA_CHAIN_TABLE:
			ch.Table = nftnl.CString(v)
		case unix.NFTA_CHAIN_NAME:
			ch.Name = nftnl.CString(v)
		case unix.NFTA_CHAIN_HANDLE:
			if len(v) == 8 {
				ch.Handle = binary.BigEndian.Uint64(v)
			}
		case unix.NFTA_CHAIN_TYPE:
			ch.Type = nftnl.CString(v)
		case unix.NFTA_CHAIN_POLICY:
			if len(v) == 4 {
				ch.Policy = map[uint32]string{0: "drop", 1: "accept"}[binary.BigEndian.Uint32(v)]
			}
		case unix.NFTA_CHAIN_HOOK:
			return nftnl.Walk(v, func(typ uint16, v []byte) error {
				switch {
				case typ == unix.NFTA_HOOK_HOOKNUM && len(v) == 4:
					ch.Hook = nftnl.HookName(string(fam), binary.BigEndian.Uint32(v))
				case typ == unix.NFTA_HOOK_PRIORITY && len(v) == 4:
					ch.Priority = int(int32(binary.BigEndian.Uint32(v)))
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return ch, fmt.Errorf("decoding nftables chain: %w", err)
	}
	return ch, nil
}

// decodeExpr decodes one expression; ok is false for expression kinds
// google/nftables has no type for.
func decodeExpr(fam byte, name string, data []byte) (expr.Any, bool, error) {
	if name == "notrack" {
		return &expr.Notrack{}, true, nil
	}
	e := exprFromName(name)
	if e == nil {
		return nil, false, nil
	}
	if name == "target" {
		t, err := xtTarget(fam, data)
		if err != nil {
			return nil, false, fmt.Errorf("decoding nftables %s expression: %w", name, err)
		}
		if t != nil {
			return t, true, nil
		}
	}
	if err := unmarshalExpr(fam, data, e); err != nil {
		return nil, false, fmt.Errorf("decoding nftables %s expression: %w", name, err)
	}
	// A verdict is an immediate into the verdict register.
	if imm, ok := e.(*expr.Immediate); ok && imm.Register == unix.NFT_REG_VERDICT && len(imm.Data) == 0 {
		v := &expr.Verdict{}
		if err := unmarshalExpr(fam, data, v); err != nil {
			return nil, false, fmt.Errorf("decoding nftables verdict: %w", err)
		}
		return v, true, nil
	}
	return e, true, nil
}

// xtTarget decodes, instead of google/nftables, the xtables NAT targets its
// v0.3.0 gets wrong, and checks those it decodes as an IPv4 range list
// (nf_nat_ipv4_multi_range_compat: MASQUERADE, SNAT, DNAT and REDIRECT
// revision 0), which it allocates by the list's count, up to 2^32, before
// reading: the kernel accepts exactly one range. It returns nil (and no
// error) for targets google/nftables reads right. An IPv4 SNAT of revision
// 1 or 2 (nf_nat_range, nf_nat_range2), which google/nftables reads as the
// compat list, is returned with its raw info, which xtNAT decodes by
// revision.
func xtTarget(fam byte, data []byte) (*expr.Target, error) {
	t := &expr.Target{}
	var info []byte
	nftnl.Walk(data, func(typ uint16, v []byte) error {
		switch {
		case typ == unix.NFTA_TARGET_NAME:
			t.Name = nftnl.CString(v)
		case typ == unix.NFTA_TARGET_REV && len(v) == 4:
			t.Rev = binary.BigEndian.Uint32(v)
		case typ == unix.NFTA_TARGET_INFO:
			info = v
		}
		return nil
	})
	if fam != unix.NFPROTO_IPV4 || info == nil {
		return nil, nil
	}
	if t.Name == "SNAT" && t.Rev > 0 {
		raw := xt.Unknown(bytes.Clone(info))
		t.Info = &raw
		return t, nil
	}
	compat := t.Name == "MASQUERADE" || (t.Rev == 0 && (t.Name == "SNAT" || t.Name == "DNAT" || t.Name == "REDIRECT"))
	if compat && (len(info) < 4 || binary.NativeEndian.Uint32(info) != 1) {
		return nil, fmt.Errorf("%s target: a range list that does not hold exactly one range", t.Name)
	}
	return nil, nil
}

// unmarshalExpr is expr.Unmarshal, with a panic turned into an error:
// google/nftables v0.3.0's decoders index attributes without checking their
// length (a verdict's data, a comment's user data), and the kernel returns
// whatever bytes a rule was written with.
func unmarshalExpr(fam byte, data []byte, e expr.Any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed attributes (google/nftables: %v)", r)
		}
	}()
	return expr.Unmarshal(fam, data, e)
}

// exprFromName mirrors google/nftables' own table of expression types.
func exprFromName(name string) expr.Any {
	switch name {
	case "ct":
		return &expr.Ct{}
	case "range":
		return &expr.Range{}
	case "meta":
		return &expr.Meta{}
	case "cmp":
		return &expr.Cmp{}
	case "counter":
		return &expr.Counter{}
	case "objref":
		return &expr.Objref{}
	case "payload":
		return &expr.Payload{}
	case "lookup":
		return &expr.Lookup{}
	case "immediate":
		return &expr.Immediate{}
	case "bitwise":
		return &expr.Bitwise{}
	case "redir":
		return &expr.Redir{}
	case "nat":
		return &expr.NAT{}
	case "limit":
		return &expr.Limit{}
	case "quota":
		return &expr.Quota{}
	case "dynset":
		return &expr.Dynset{}
	case "log":
		return &expr.Log{}
	case "exthdr":
		return &expr.Exthdr{}
	case "match":
		return &expr.Match{}
	case "target":
		return &expr.Target{}
	case "connlimit":
		return &expr.Connlimit{}
	case "queue":
		return &expr.Queue{}
	case "flow_offload":
		return &expr.FlowOffload{}
	case "reject":
		return &expr.Reject{}
	case "masq":
		return &expr.Masq{}
	case "hash":
		return &expr.Hash{}
	case "cthelper":
		return &expr.CtHelper{}
	case "synproxy":
		return &expr.SynProxy{}
	case "ctexpect":
		return &expr.CtExpect{}
	case "secmark":
		return &expr.SecMark{}
	case "cttimeout":
		return &expr.CtTimeout{}
	case "fib":
		return &expr.Fib{}
	case "numgen":
		return &expr.Numgen{}
	}
	return nil
}

// fromNftDump turns a netlink dump into a Ruleset. Its Chains may be
// shared with other reads of the same ChainCache (chainList.view).
func fromNftDump(d *nftDump) *Ruleset {
	l := d.list
	rs := &Ruleset{Generation: d.gen}
	counts := make(map[int]int, len(d.reached))
	for _, i := range d.reached {
		counts[i] = 0
	}
	ipt := maps.Clone(l.ipt)
	for _, r := range d.rules {
		ci, ok := l.idx[tableKey{r.family, r.table, r.chain}]
		if !ok {
			continue
		}
		c := &l.chains[ci]
		counts[ci]++
		for _, to := range r.jumps {
			rs.Jumps = append(rs.Jumps, Jump{Family: r.family, Table: c.Table, From: c.Name, To: to})
		}
		if r.nat == nil || !isSourceNAT(r.nat.Exprs, func() { ipt[tableKey{r.family, c.Table, ""}] = true }) {
			continue
		}
		if rule, warn, ok := nftRuleOf(c, counts[ci], r); ok {
			if warn != "" {
				rs.Warnings = append(rs.Warnings, warn)
			}
			rs.Rules = append(rs.Rules, rule)
		}
	}
	for _, c := range l.dormantNAT {
		rs.Warnings = append(rs.Warnings, fmt.Sprintf("nftables table %s %s is dormant (flags dormant): the kernel runs none of its chains, so the source NAT of its chain %s is not audited", c.Family, c.Table, c.Name))
	}
	rs.Chains = l.view(counts, ipt)
	rs.bases, rs.basesKnown = l.bases, true
	setRuleBackends(rs, func(f Family, table string) Backend {
		if ipt[tableKey{f, table, ""}] {
			return natrule.IptablesNFT
		}
		return natrule.Nftables
	})
	rs.Sources = append(rs.Sources, nftSources(rs, len(d.rules))...)
	rs.scope = d.scope()
	return rs
}

// isSourceNAT reports whether exprs hold a masquerade, an snat or an xt
// MASQUERADE/SNAT target; xt calls back for every xt expression, which marks
// the table as iptables-nft's.
func isSourceNAT(exprs []expr.Any, xt func()) bool {
	isNAT := false
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Masq:
			isNAT = true
		case *expr.NAT:
			isNAT = isNAT || e.Type == expr.NATTypeSourceNAT
		case *expr.Target:
			xt()
			isNAT = isNAT || e.Name == "MASQUERADE" || e.Name == "SNAT"
		case *expr.Match:
			xt()
		}
	}
	return isNAT
}

// nftRuleOf builds the Rule of a dumped source-NAT rule at position pos
// (from 1) of chain c; warn is what the decoder noticed.
func nftRuleOf(c *Chain, pos int, r dumpRule) (rule Rule, warn string, ok bool) {
	nr := r.nat
	desc := describeExprs(r.family, nr.Exprs, nr.UserData)
	if desc.nat == nil {
		return Rule{}, "", false
	}
	text := strings.Join(append(append([]string(nil), desc.match...), desc.stmts...), " ")
	text = strings.TrimSpace(text + " " + desc.natText)
	if desc.comment != "" {
		text += fmt.Sprintf(" comment %q", desc.comment)
	}
	rule = Rule{
		Location: Location{Family: r.family, Table: c.Table, Chain: c.Name, Position: pos, Handle: nr.Handle},
		Hook:     c.Hook, Match: strings.Join(desc.match, " "), NAT: *desc.nat, FlagsKnown: true, Comment: desc.comment,
		Text: text, XT: desc.xt, Raw: &NftRaw{Rule: nr, Complete: r.complete},
	}
	for _, w := range []string{r.warn, desc.warn} {
		if w != "" {
			warn = strings.TrimPrefix(warn+"; "+w, "; ")
		}
	}
	if warn != "" {
		warn = fmt.Sprintf("%s %s %s handle %d: %s", r.family, c.Table, c.Name, nr.Handle, warn)
	}
	return rule, warn, true
}

// nftSources counts the rules read over netlink by backend.
func nftSources(rs *Ruleset, scanned int) []Source {
	counts := map[Backend]int{}
	for _, r := range rs.Rules {
		counts[r.Backend]++
	}
	out := []Source{{Backend: natrule.Nftables, Where: "netlink", Format: "netlink", Rules: counts[natrule.Nftables], Scanned: scanned}}
	if counts[natrule.IptablesNFT] > 0 {
		out = append(out, Source{Backend: natrule.IptablesNFT, Where: "netlink", Format: "netlink", Rules: counts[natrule.IptablesNFT]})
	}
	return out
}
