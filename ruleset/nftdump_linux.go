//go:build linux

package ruleset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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
}

// readRules dumps every rule of every family in one request. Attributes are
// walked in place (no per-attribute allocation); names are interned.
func (d *nftDump) readRules(c *netlink.Conn) error {
	msgs, err := c.Execute(nftRequest(unix.NFT_MSG_GETRULE, netlink.Dump))
	if err != nil {
		return fmt.Errorf("listing nftables rules: %w", err)
	}
	d.rules = make([]dumpRule, 0, len(msgs))
	intern := map[string]string{}
	name := func(b []byte) string {
		b = bytes.TrimRight(b, "\x00")
		if s, ok := intern[string(b)]; ok {
			return s
		}
		s := string(b)
		intern[s] = s
		return s
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		fam := m.Data[0]
		r := dumpRule{family: familyNames[fam]}
		var exprs, udata []byte
		err := walkAttrs(m.Data[4:], func(typ uint16, v []byte) error {
			switch typ {
			case unix.NFTA_RULE_TABLE:
				r.table = name(v)
			case unix.NFTA_RULE_CHAIN:
				r.chain = name(v)
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
			return fmt.Errorf("decoding nftables rule: %w", err)
		}
		if r.table == "" || r.chain == "" {
			return errors.New("decoding nftables rule: no table or chain")
		}
		full := false
		err = walkExprs(exprs, func(kind string, data []byte) error {
			if natExprs[kind] {
				full = true
			}
			if kind == "immediate" {
				if to, ok := verdictJump(data); ok {
					r.jumps = append(r.jumps, name(to))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("decoding nftables rule: %w", err)
		}
		if full {
			if r.nat, r.complete, err = decodeRule(fam, &r, exprs, udata); err != nil {
				return err
			}
		}
		d.rules = append(d.rules, r)
	}
	return nil
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
		nr.Exprs = append(nr.Exprs, e)
		return nil
	})
	return nr, complete, err
}

// walkAttrs calls fn for each netlink attribute in b (type without the
// nested/byte-order flags), without allocating.
func walkAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			return errors.New("malformed netlink attribute")
		}
		if err := fn(typ, b[4:l]); err != nil {
			return err
		}
		l = (l + 3) &^ 3
		if l > len(b) {
			l = len(b)
		}
		b = b[l:]
	}
	return nil
}

// walkExprs calls fn with the name and data of each expression of an
// NFTA_RULE_EXPRESSIONS list.
func walkExprs(list []byte, fn func(kind string, data []byte) error) error {
	return walkAttrs(list, func(_ uint16, elem []byte) error {
		var (
			kind string
			data []byte
		)
		if err := walkAttrs(elem, func(typ uint16, v []byte) error {
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
	walkAttrs(data, func(typ uint16, v []byte) error {
		if typ != unix.NFTA_IMMEDIATE_DATA {
			return nil
		}
		return walkAttrs(v, func(typ uint16, v []byte) error {
			if typ != unix.NFTA_DATA_VERDICT {
				return nil
			}
			return walkAttrs(v, func(typ uint16, v []byte) error {
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
