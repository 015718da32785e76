//go:build linux

package ruleset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
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
	jumps        []string
	// nat is set for rules holding a masq, nat, target or match expression.
	nat *nftables.Rule
	// complete is false when one of nat's expressions could not be decoded.
	complete bool
	// warn is what the decoder noticed about the rule, for the user.
	warn string
}

// readRules dumps every rule of every family in one request. Attributes are
// walked in place (no per-attribute allocation); names are interned.
func (d *nftDump) readRules(c *nftnl.Conn) (bool, error) {
	msgs, intr, err := c.Dump(unix.NFT_MSG_GETRULE, unix.AF_UNSPEC, nil)
	if err != nil {
		return false, fmt.Errorf("listing nftables rules: %w", err)
	}
	d.rules = make([]dumpRule, 0, len(msgs))
	in := interner{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		r, err := decodeDumpRule(m.Data, in)
		if err != nil {
			return false, err
		}
		d.rules = append(d.rules, r)
	}
	return intr, nil
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

// decodeDumpRule decodes one NFT_MSG_NEWRULE message: its place and jumps
// always, its expressions only when one of them can be source NAT.
func decodeDumpRule(data []byte, in interner) (dumpRule, error) {
	fam := data[0]
	r := dumpRule{family: Family(nftnl.FamilyName(fam))}
	var exprs, udata []byte
	err := nftnl.Walk(data[4:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.NFTA_RULE_TABLE:
			r.table = in.name(v)
		case unix.NFTA_RULE_CHAIN:
			r.chain = in.name(v)
		case unix.NFTA_RULE_HANDLE:
			if len(v) == 8 {
				r.handle = binary.BigEndian.Uint64(v)
			}
		case unix.NFTA_RULE_USERDATA:
			udata = v
		case unix.NFTA_RULE_EXPRESSIONS:
			exprs = v
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("decoding nftables rule: %w", err)
	}
	if r.table == "" || r.chain == "" {
		return r, errors.New("decoding nftables rule: no table or chain")
	}
	full := false
	err = walkExprs(exprs, func(kind string, data []byte) error {
		full = full || natExprs[kind]
		if kind == "immediate" {
			if to, ok := verdictJump(data); ok {
				r.jumps = append(r.jumps, in.name(to))
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("decoding nftables rule: %w", err)
	}
	if full {
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
		nr.UserData = append([]byte(nil), udata...)
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
	var (
		code  int32
		chain []byte
	)
	nftnl.Walk(data, func(typ uint16, v []byte) error {
		if typ != unix.NFTA_IMMEDIATE_DATA {
			return nil
		}
		return nftnl.Walk(v, func(typ uint16, v []byte) error {
			if typ != unix.NFTA_DATA_VERDICT {
				return nil
			}
			return nftnl.Walk(v, func(typ uint16, v []byte) error {
				switch typ {
				case unix.NFTA_VERDICT_CODE:
					if len(v) == 4 {
						code = int32(binary.BigEndian.Uint32(v))
					}
				case unix.NFTA_VERDICT_CHAIN:
					chain = v
				}
				return nil
			})
		})
	})
	return chain, chain != nil && (code == unix.NFT_JUMP || code == unix.NFT_GOTO)
}
