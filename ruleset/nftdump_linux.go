//go:build linux

package ruleset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/nftnl"
)

// natExprs are the expression kinds that can make a rule source NAT; only
// rules that hold one are decoded fully (the others only for their jumps),
// which keeps a 10,000-rule read cheap.
var natExprs = map[string]bool{"masq": true, "nat": true, "target": true, "match": true}

// dumpRule is one rule of the dump: where it is, where it jumps, and, for
// rules that may be source NAT, the fully decoded kernel rule.
type dumpRule struct {
	family       Family
	table, chain string
	handle       uint64
	position     uint64 // the handle of the rule before it (0: none)
	jumps        []string
	// vmaps are the verdict maps the rule looks up: their elements may
	// jump or go to other chains.
	vmaps []string
	// nat is set for rules holding a masq, nat, target or match expression.
	nat *nftables.Rule
	// complete is false when one of nat's expressions could not be decoded.
	complete bool
	// warn is what the decoder noticed about the rule, for the user.
	warn string
}

// readReachable reads the rules of every chain source NAT can run in: the
// nat base chains at postrouting and input, and every chain they reach
// through jumps, gotos and verdict maps, breadth first. Each chain is one
// dump filtered by table and chain, which the kernel answers from that
// chain alone; a dump of the whole ruleset instead resumes each 32 KiB part
// by walking every rule before it, quadratic in rules (BENCHMARKS.md). Rules
// are decoded as their part arrives; nothing else of the dump is kept.
func (d *nftDump) readReachable(c *nftnl.Conn) (bool, error) {
	l := d.list
	seen := make(map[int]bool, len(l.natBases)) // the reached, not all chains
	d.reached = append([]int(nil), l.natBases...)
	for _, i := range l.natBases {
		seen[i] = true
	}
	visit := func(ch Chain, to string) {
		if j, ok := l.idx[tableKey{ch.Family, ch.Table, to}]; ok && !seen[j] {
			seen[j] = true
			d.reached = append(d.reached, j)
		}
	}
	in := interner{}
	intr := false
	for next := 0; next < len(d.reached); next++ {
		ch := l.chains[d.reached[next]]
		start := len(d.rules)
		i, err := d.readChainRules(c, ch, in)
		if err != nil {
			return false, err
		}
		intr = intr || i
		for k := start; k < len(d.rules); k++ {
			r := &d.rules[k]
			for _, set := range r.vmaps {
				d.maps = append(d.maps, tableKey{ch.Family, ch.Table, set})
				tos, i, err := c.MapJumps(nftFamily(ch.Family), ch.Table, set)
				if err != nil {
					return false, err
				}
				intr = intr || i
				for _, to := range tos {
					r.jumps = append(r.jumps, in.name([]byte(to)))
				}
			}
			for _, to := range r.jumps {
				visit(ch, to)
			}
		}
	}
	return intr, nil
}

// readChainRules appends the rules of chain ch to d.rules, in order. A
// dump that gives a rule twice or skips some is torn (nftnl.TornRules).
func (d *nftDump) readChainRules(c *nftnl.Conn, ch Chain, in interner) (bool, error) {
	start := len(d.rules)
	intr, err := c.DumpEach(unix.NFT_MSG_GETRULE, nftFamily(ch.Family), []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(ch.Table), 0)},
		{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(ch.Name), 0)},
	}, func(m netlink.Message) error {
		if len(m.Data) < 4 {
			return nil
		}
		r, err := decodeDumpRule(m.Data, in)
		if err != nil {
			return err
		}
		if r.table == ch.Table && r.chain == ch.Name && r.family == ch.Family {
			d.rules = append(d.rules, r)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("listing the rules of %s %s %s: %w", ch.Family, ch.Table, ch.Name, err)
	}
	if nftnl.TornRules(d.rules[start:], func(r *dumpRule) uint64 { return r.handle }, func(r *dumpRule) uint64 { return r.position }) {
		d.torn = true
	}
	return intr || d.torn, nil
}

// nftFamily is the nfproto number of a family read from the kernel.
func nftFamily(f Family) byte {
	n, _ := nftnl.FamilyNumber(string(f))
	return n
}

// interner shares one string per table, chain and jump target name.
type interner map[string]string

func (in interner) name(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// ruleAttrs walks one NFT_MSG_NEWRULE message: the rule's family, table,
// chain and handle, and views of its expressions and user data (in data:
// copy them to keep them past the dump's next read).
func ruleAttrs(data []byte, in interner) (r dumpRule, exprs, udata []byte, err error) {
	if len(data) < 4 {
		return r, nil, nil, errors.New("decoding nftables rule: message too short")
	}
	r.family = Family(nftnl.FamilyName(data[0]))
	err = nftnl.Walk(data[4:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.NFTA_RULE_TABLE:
			r.table = in.name(v)
		case unix.NFTA_RULE_CHAIN:
			r.chain = in.name(v)
		case unix.NFTA_RULE_HANDLE:
			if len(v) == 8 {
				r.handle = binary.BigEndian.Uint64(v)
			}
		case unix.NFTA_RULE_POSITION:
			if len(v) == 8 {
				r.position = binary.BigEndian.Uint64(v)
			}
		case unix.NFTA_RULE_USERDATA:
			udata = v
		case unix.NFTA_RULE_EXPRESSIONS:
			exprs = v
		}
		return nil
	})
	if err != nil {
		return r, nil, nil, fmt.Errorf("decoding nftables rule: %w", err)
	}
	return r, exprs, udata, nil
}

// decodeDumpRule decodes one NFT_MSG_NEWRULE message: its place and jumps
// always, its expressions only when one of them can be source NAT.
func decodeDumpRule(data []byte, in interner) (dumpRule, error) {
	r, exprs, udata, err := ruleAttrs(data, in)
	if err != nil {
		return r, err
	}
	fam := data[0]
	if r.table == "" || r.chain == "" {
		return r, errors.New("decoding nftables rule: no table or chain")
	}
	full := false
	err = walkExprs(exprs, func(kind string, data []byte) error {
		full = full || natExprs[kind]
		switch kind {
		case "immediate":
			if to, ok := verdictJump(data); ok {
				r.jumps = append(r.jumps, in.name(to))
			}
		case "lookup":
			if set, ok := verdictMap(data); ok {
				r.vmaps = append(r.vmaps, in.name(set))
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("decoding nftables rule: %w", err)
	}
	if full {
		// The dump's buffer is reused: the decoded rule keeps copies
		// (google/nftables' cmp keeps a view of its data).
		exprs, udata = bytes.Clone(exprs), bytes.Clone(udata)
		if r.nat, r.complete, err = decodeRule(fam, &r, exprs, udata); err != nil {
			return r, err
		}
	}
	return r, nil
}

// decodeRule decodes a rule fully into google/nftables types.
func decodeRule(fam byte, r *dumpRule, exprs, udata []byte) (*nftables.Rule, bool, error) {
	t := &nftables.Table{Name: r.table, Family: nftables.TableFamily(fam)}
	nr := &nftables.Rule{Table: t, Chain: &nftables.Chain{Name: r.chain, Table: t}, Handle: r.handle}
	if udata != nil {
		nr.UserData = udata
	}
	complete := true
	err := walkExprs(exprs, func(kind string, data []byte) error {
		e, ok, err := decodeExpr(fam, kind, data)
		if err != nil {
			return err
		}
		if !ok {
			complete = false
			return nil
		}
		if m, isMasq := e.(*expr.Masq); isMasq && m.ToPorts && !masqProtoSpecified(data) {
			// The kernel applies a masquerade port range only with
			// NF_NAT_RANGE_PROTO_SPECIFIED, which nft_masq does not add
			// itself: without it the range is ignored.
			m.ToPorts, m.RegProtoMin, m.RegProtoMax = false, 0, 0
			r.warn = "masquerade has a port range without NF_NAT_RANGE_PROTO_SPECIFIED: the kernel ignores the range (written by google/nftables-based software?); read as plain masquerade"
		}
		nr.Exprs = append(nr.Exprs, e)
		return nil
	})
	return nr, complete, err
}

// masqProtoSpecified reports whether a masq expression's flags carry
// NF_NAT_RANGE_PROTO_SPECIFIED.
func masqProtoSpecified(data []byte) bool {
	spec := false
	nftnl.Walk(data, func(typ uint16, v []byte) error {
		if typ == unix.NFTA_MASQ_FLAGS && len(v) == 4 {
			spec = natmodel.Flags(binary.BigEndian.Uint32(v))&natmodel.ProtoSpecified != 0
		}
		return nil
	})
	return spec
}

// walkExprs calls fn with the name and data of each expression of an
// NFTA_RULE_EXPRESSIONS list.
func walkExprs(list []byte, fn func(kind string, data []byte) error) error {
	return nftnl.Walk(list, func(_ uint16, elem []byte) error {
		var (
			kind string
			data []byte
		)
		if err := nftnl.Walk(elem, func(typ uint16, v []byte) error {
			switch typ {
			case unix.NFTA_EXPR_NAME:
				kind = exprKind(v)
			case unix.NFTA_EXPR_DATA:
				data = v
			}
			return nil
		}); err != nil {
			return err
		}
		return fn(kind, data)
	})
}

// exprKind returns the expression name, without allocating for the common ones.
func exprKind(v []byte) string {
	v = bytes.TrimRight(v, "\x00")
	switch string(v) {
	case "immediate":
		return "immediate"
	case "cmp":
		return "cmp"
	case "payload":
		return "payload"
	case "meta":
		return "meta"
	case "counter":
		return "counter"
	case "lookup":
		return "lookup"
	case "bitwise":
		return "bitwise"
	}
	return string(v)
}

// verdictJump returns the chain an immediate expression jumps or goes to.
func verdictJump(data []byte) ([]byte, bool) {
	var verdict []byte
	nftnl.Walk(data, func(typ uint16, v []byte) error {
		if typ == unix.NFTA_IMMEDIATE_DATA {
			verdict = nftnl.DataVerdict(v)
		}
		return nil
	})
	return nftnl.VerdictJump(verdict)
}

// verdictMap returns the set a lookup expression reads a verdict from (a
// vmap): a lookup whose destination is the verdict register.
func verdictMap(data []byte) ([]byte, bool) {
	var (
		set  []byte
		dreg = -1
	)
	nftnl.Walk(data, func(typ uint16, v []byte) error {
		switch {
		case typ == unix.NFTA_LOOKUP_SET:
			set = v
		case typ == unix.NFTA_LOOKUP_DREG && len(v) == 4:
			dreg = int(binary.BigEndian.Uint32(v))
		}
		return nil
	})
	return set, set != nil && dreg == unix.NFT_REG_VERDICT
}
