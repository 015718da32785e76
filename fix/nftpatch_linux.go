//go:build linux

package fix

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/nftnl"
)

// rawRule is one nftables rule as the kernel dumped it, attributes verbatim.
type rawRule struct {
	Family byte
	Table  string
	Chain  string
	Handle uint64
	// Attrs are the rule's top-level attributes, flags bits included.
	Attrs []netlink.Attribute
}

// parseRawRule decodes a NFT_MSG_NEWRULE message of a dump.
func parseRawRule(data []byte) (rawRule, error) {
	var r rawRule
	if len(data) < 4 {
		return r, errors.New("decoding nftables rule: short message")
	}
	r.Family = data[0]
	attrs, err := netlink.UnmarshalAttributes(data[4:])
	if err != nil {
		return r, fmt.Errorf("decoding nftables rule: %w", err)
	}
	r.Attrs = attrs
	for _, a := range attrs {
		switch a.Type & attrTypeMask {
		case unix.NFTA_RULE_TABLE:
			r.Table = cstring(a.Data)
		case unix.NFTA_RULE_CHAIN:
			r.Chain = cstring(a.Data)
		case unix.NFTA_RULE_HANDLE:
			if len(a.Data) != 8 {
				return r, errors.New("decoding nftables rule: bad handle")
			}
			r.Handle = binary.BigEndian.Uint64(a.Data)
		}
	}
	if r.Table == "" || r.Chain == "" || r.Handle == 0 {
		return r, errors.New("decoding nftables rule: no table, chain or handle")
	}
	return r, nil
}

// rawPosition is the handle of the rule before r as its dump gave it
// (NFTA_RULE_POSITION), 0 for none.
func rawPosition(r *rawRule) uint64 {
	for _, a := range r.Attrs {
		if a.Type&attrTypeMask == unix.NFTA_RULE_POSITION && len(a.Data) == 8 {
			return binary.BigEndian.Uint64(a.Data)
		}
	}
	return 0
}

const attrTypeMask = nftnl.TypeMask

var cstring = nftnl.CString

// natKind says which expression carries a rule's NAT flags.
type natKind string

const (
	natMasq     natKind = "masq"
	natSNAT     natKind = "nat"
	natXTMasq   natKind = "xt MASQUERADE"
	natXTSNAT   natKind = "xt SNAT"
	nftNATSNAT          = 0 // NFT_NAT_SNAT
	flagsFullyR         = uint32(natmodel.ProtoRandomFully)
)

// ErrAnonymousSet is returned for rules that update an anonymous set
// (dynset): the kernel cannot bind a second rule to it, and unlike a lookup's
// constant set it cannot be copied.
var ErrAnonymousSet = errors.New("the rule updates an anonymous set, which a replacement cannot bind again")

// patchResult is what setNATFlags changed.
type patchResult struct {
	Kind     natKind
	OldFlags uint32
	NewFlags uint32
}

// setNATFlags returns a copy of the rule's attributes where the flags word of
// its one source-NAT expression is set to set(old). Every other byte is
// kept. A masq or nat expression without a flags attribute gets one.
func setNATFlags(r rawRule, set func(old uint32) uint32) ([]netlink.Attribute, patchResult, error) {
	var res patchResult
	out := make([]netlink.Attribute, 0, len(r.Attrs))
	found := 0
	for _, a := range r.Attrs {
		if a.Type&attrTypeMask != unix.NFTA_RULE_EXPRESSIONS {
			out = append(out, a)
			continue
		}
		elems, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return nil, res, fmt.Errorf("decoding expressions: %w", err)
		}
		for i, el := range elems {
			name, data, err := exprParts(el.Data)
			if err != nil {
				return nil, res, err
			}
			if name == "dynset" && usesAnonymousSet(data) {
				return nil, res, ErrAnonymousSet
			}
			nd, kind, old, err := patchExpr(name, data, r.Family, set)
			if err != nil {
				return nil, res, err
			}
			if kind == "" {
				continue
			}
			found++
			res = patchResult{Kind: kind, OldFlags: old, NewFlags: set(old)}
			ne, err := netlink.MarshalAttributes([]netlink.Attribute{
				{Type: unix.NFTA_EXPR_NAME, Data: append([]byte(name), 0)},
				{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: nd},
			})
			if err != nil {
				return nil, res, fmt.Errorf("encoding %s expression: %w", name, err)
			}
			elems[i].Data, elems[i].Length = ne, 0
		}
		ed, err := netlink.MarshalAttributes(elems)
		if err != nil {
			return nil, res, fmt.Errorf("encoding expressions: %w", err)
		}
		out = append(out, netlink.Attribute{Type: a.Type, Data: ed})
	}
	switch found {
	case 0:
		return nil, res, errors.New("no source-NAT expression in the rule")
	case 1:
		return out, res, nil
	}
	return nil, res, fmt.Errorf("%d source-NAT expressions in one rule", found)
}

// volatileExprs keep state that changes as packets pass: a rule's
// fingerprint takes only their names.
var volatileExprs = map[string]bool{"counter": true, "quota": true, "last": true}

// ruleSum fingerprints what a rule does: its expressions (the state of
// counters and quotas aside) and its user data (the comment), as hex. Two
// rules with the same sum are the same rule to a rollback, whatever their
// handles: a table its owner recreated numbers its rules from 1 again.
func ruleSum(r rawRule) (string, error) {
	h := sha256.New()
	for _, a := range r.Attrs {
		switch a.Type & attrTypeMask {
		case unix.NFTA_RULE_USERDATA:
			h.Write([]byte("udata"))
			h.Write(a.Data)
		case unix.NFTA_RULE_EXPRESSIONS:
			elems, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				return "", fmt.Errorf("decoding expressions: %w", err)
			}
			for _, el := range elems {
				name, data, err := exprParts(el.Data)
				if err != nil {
					return "", err
				}
				h.Write([]byte{0})
				h.Write([]byte(name))
				if !volatileExprs[name] {
					h.Write([]byte{1})
					h.Write(data)
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// exprParts splits a NFTA_LIST_ELEM into the expression name and data.
func exprParts(b []byte) (string, []byte, error) {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return "", nil, fmt.Errorf("decoding expression: %w", err)
	}
	var name string
	var data []byte
	for _, a := range attrs {
		switch a.Type & attrTypeMask {
		case unix.NFTA_EXPR_NAME:
			name = cstring(a.Data)
		case unix.NFTA_EXPR_DATA:
			data = a.Data
		}
	}
	if name == "" {
		return "", nil, errors.New("decoding expression: no name")
	}
	return name, data, nil
}

func usesAnonymousSet(data []byte) bool {
	attrs, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return false
	}
	for _, a := range attrs {
		// NFTA_LOOKUP_SET and NFTA_DYNSET_SET_NAME are both type 1.
		if a.Type&attrTypeMask == 1 && strings.HasPrefix(cstring(a.Data), "__set") {
			return true
		}
	}
	return false
}

// patchExpr sets the NAT flags of one expression; kind is "" when the
// expression is not a source-NAT one (data is then returned unchanged).
func patchExpr(name string, data []byte, fam byte, set func(uint32) uint32) ([]byte, natKind, uint32, error) {
	switch name {
	case "masq":
		nd, old, err := setFlagsAttr(data, unix.NFTA_MASQ_FLAGS, set)
		return nd, natMasq, old, err
	case "nat":
		attrs, err := netlink.UnmarshalAttributes(data)
		if err != nil {
			return nil, "", 0, fmt.Errorf("decoding nat expression: %w", err)
		}
		snat := false
		for _, a := range attrs {
			if a.Type&attrTypeMask == unix.NFTA_NAT_TYPE && len(a.Data) == 4 {
				snat = binary.BigEndian.Uint32(a.Data) == nftNATSNAT
			}
		}
		if !snat {
			return data, "", 0, nil
		}
		nd, old, err := setFlagsAttr(data, unix.NFTA_NAT_FLAGS, set)
		return nd, natSNAT, old, err
	case "target":
		return patchTarget(data, fam, set)
	}
	return data, "", 0, nil
}

// setFlagsAttr sets (or adds) the big-endian u32 attribute typ.
func setFlagsAttr(data []byte, typ uint16, set func(uint32) uint32) ([]byte, uint32, error) {
	attrs, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, 0, fmt.Errorf("decoding NAT expression: %w", err)
	}
	var old uint32
	at := -1
	for i, a := range attrs {
		if a.Type&attrTypeMask == typ {
			if len(a.Data) != 4 {
				return nil, 0, fmt.Errorf("NAT flags attribute of %d bytes", len(a.Data))
			}
			old, at = binary.BigEndian.Uint32(a.Data), i
		}
	}
	v := binary.BigEndian.AppendUint32(nil, set(old))
	if at >= 0 {
		attrs[at].Data, attrs[at].Length = v, 0
	} else if set(old) != 0 {
		attrs = append(attrs, netlink.Attribute{Type: typ, Data: v})
	}
	nd, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, 0, fmt.Errorf("encoding NAT expression: %w", err)
	}
	return nd, old, nil
}

// patchTarget sets the flags inside an xt MASQUERADE or SNAT target's info:
// nf_nat_ipv4_multi_range_compat for IPv4 revision 0 (flags after the u32
// rangesize), nf_nat_range / nf_nat_range2 otherwise (flags first). The info
// is a C struct in host byte order.
func patchTarget(data []byte, fam byte, set func(uint32) uint32) ([]byte, natKind, uint32, error) {
	attrs, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, "", 0, fmt.Errorf("decoding xt target: %w", err)
	}
	var tname string
	var rev uint32
	info := -1
	for i, a := range attrs {
		switch a.Type & attrTypeMask {
		case unix.NFTA_TARGET_NAME:
			tname = cstring(a.Data)
		case unix.NFTA_TARGET_REV:
			if len(a.Data) == 4 {
				rev = binary.BigEndian.Uint32(a.Data)
			}
		case unix.NFTA_TARGET_INFO:
			info = i
		}
	}
	var kind natKind
	switch tname {
	case "MASQUERADE":
		kind = natXTMasq
	case "SNAT":
		kind = natXTSNAT
	default:
		return data, "", 0, nil
	}
	if info < 0 {
		return nil, "", 0, fmt.Errorf("xt %s target without info", tname)
	}
	off := nftnl.XTNATFlagsOffset(fam, rev)
	b := append([]byte(nil), attrs[info].Data...)
	if len(b) < off+4 {
		return nil, "", 0, fmt.Errorf("xt %s target info of %d bytes is too short", tname, len(b))
	}
	ne := binary.NativeEndian
	old := ne.Uint32(b[off:])
	ne.PutUint32(b[off:], set(old))
	attrs[info].Data, attrs[info].Length = b, 0
	nd, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, "", 0, fmt.Errorf("encoding xt target: %w", err)
	}
	return nd, kind, old, nil
}

// compatAttr derives NFTA_RULE_COMPAT for a rule with xt expressions, as
// iptables-nft sends it: the kernel does not dump it, but xt matches such as
// tcp/udp/multiport check the rule's protocol through it. It returns false
// when the rule needs none.
func compatAttr(attrs []netlink.Attribute, fam byte) (netlink.Attribute, bool) {
	cs := compatScan{fam: fam}
	for _, a := range attrs {
		if a.Type&attrTypeMask != unix.NFTA_RULE_EXPRESSIONS {
			continue
		}
		elems, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return netlink.Attribute{}, false
		}
		for _, el := range elems {
			name, data, err := exprParts(el.Data)
			if err != nil {
				return netlink.Attribute{}, false
			}
			cs.expr(name, data)
		}
	}
	if !cs.xt || cs.proto == 0 {
		return netlink.Attribute{}, false
	}
	var flags uint32
	if cs.inv {
		flags = unix.NFT_RULE_COMPAT_F_INV
	}
	data, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_COMPAT_PROTO, Data: binary.BigEndian.AppendUint32(nil, cs.proto)},
		{Type: unix.NFTA_RULE_COMPAT_FLAGS, Data: binary.BigEndian.AppendUint32(nil, flags)},
	})
	if err != nil {
		return netlink.Attribute{}, false
	}
	return netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_COMPAT, Data: data}, true
}

// compatScan follows a rule's expressions to find the L4 protocol it
// compares (meta l4proto or ip protocol, then cmp), or an xt match implies.
type compatScan struct {
	fam            byte
	proto          uint32
	inv, xt        bool
	haveProto      bool
	lastLoadsProto bool // the last load put the L4 protocol in a register
}

func (cs *compatScan) expr(name string, data []byte) {
	ea, _ := netlink.UnmarshalAttributes(data)
	get := func(t uint16) []byte {
		for _, x := range ea {
			if x.Type&attrTypeMask == t {
				return x.Data
			}
		}
		return nil
	}
	be32 := func(t uint16) uint32 {
		if b := get(t); len(b) == 4 {
			return binary.BigEndian.Uint32(b)
		}
		return 0
	}
	loads := false
	switch name {
	case "match", "target":
		cs.xt = true
		if p, ok := xtMatchProto[cstring(get(unix.NFTA_MATCH_NAME))]; ok && !cs.haveProto && name == "match" {
			cs.proto = p
		}
	case "meta":
		loads = be32(unix.NFTA_META_KEY) == unix.NFT_META_L4PROTO
	case "payload":
		loads = cs.fam == unix.NFPROTO_IPV4 && be32(unix.NFTA_PAYLOAD_BASE) == unix.NFT_PAYLOAD_NETWORK_HEADER &&
			be32(unix.NFTA_PAYLOAD_OFFSET) == 9 && be32(unix.NFTA_PAYLOAD_LEN) == 1
	case "cmp":
		if cs.lastLoadsProto && !cs.haveProto {
			vals, _ := netlink.UnmarshalAttributes(get(unix.NFTA_CMP_DATA))
			for _, v := range vals {
				if v.Type&attrTypeMask == unix.NFTA_DATA_VALUE && len(v.Data) >= 1 {
					cs.proto, cs.haveProto, cs.inv = uint32(v.Data[0]), true, be32(unix.NFTA_CMP_OP) == unix.NFT_CMP_NEQ
				}
			}
		}
	}
	cs.lastLoadsProto = loads
}

// xtMatchProto is the protocol an xt match implies when the rule has no
// protocol comparison (google/nftables' table, trimmed).
var xtMatchProto = map[string]uint32{
	"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "udplite": unix.IPPROTO_UDPLITE,
	"tcpmss": unix.IPPROTO_TCP, "sctp": unix.IPPROTO_SCTP,
}

// replaceMessage builds the NFT_MSG_NEWRULE that replaces r (by handle) with
// attrs: table, chain, handle, expressions and user data as given, the
// position dropped (a replacement keeps its place), a compat attribute
// added when the rule has xt expressions.
func replaceMessage(r rawRule, attrs []netlink.Attribute) (netlink.Message, error) {
	keep := make([]netlink.Attribute, 0, len(attrs)+1)
	for _, a := range attrs {
		switch a.Type & attrTypeMask {
		case unix.NFTA_RULE_TABLE, unix.NFTA_RULE_CHAIN, unix.NFTA_RULE_HANDLE, unix.NFTA_RULE_EXPRESSIONS, unix.NFTA_RULE_USERDATA:
			keep = append(keep, a)
		}
	}
	if c, ok := compatAttr(attrs, r.Family); ok {
		keep = append(keep, c)
	}
	data, err := netlink.MarshalAttributes(keep)
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encoding rule %d: %w", r.Handle, err)
	}
	return nftnl.Message(unix.NFT_MSG_NEWRULE, netlink.Acknowledge|netlink.Replace, r.Family, data), nil
}

// anonLookups returns the anonymous sets ("__set%d") the rule's lookup
// expressions use. The kernel binds an anonymous set to one rule: a
// replacement needs its own copy of the set, created in the same batch.
func anonLookups(r rawRule) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range r.Attrs {
		if a.Type&attrTypeMask != unix.NFTA_RULE_EXPRESSIONS {
			continue
		}
		elems, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return nil
		}
		for _, el := range elems {
			name, data, err := exprParts(el.Data)
			if err != nil || name != "lookup" {
				continue
			}
			attrs, _ := netlink.UnmarshalAttributes(data)
			for _, x := range attrs {
				if x.Type&attrTypeMask == unix.NFTA_LOOKUP_SET {
					if n := cstring(x.Data); strings.HasPrefix(n, "__set") && !seen[n] {
						seen[n] = true
						out = append(out, n)
					}
				}
			}
		}
	}
	return out
}

// relinkLookups points the rule's lookups of the anonymous sets in ids to
// the copies created in the same batch (by set id, under the name template
// the kernel fills in).
func relinkLookups(attrs []netlink.Attribute, ids map[string]uint32) ([]netlink.Attribute, error) {
	out := make([]netlink.Attribute, 0, len(attrs))
	for _, a := range attrs {
		if a.Type&attrTypeMask != unix.NFTA_RULE_EXPRESSIONS {
			out = append(out, a)
			continue
		}
		elems, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding expressions: %w", err)
		}
		for i, el := range elems {
			name, data, err := exprParts(el.Data)
			if err != nil {
				return nil, err
			}
			if name != "lookup" {
				continue
			}
			la, err := netlink.UnmarshalAttributes(data)
			if err != nil {
				return nil, fmt.Errorf("decoding lookup: %w", err)
			}
			var id uint32
			found := false
			nl := make([]netlink.Attribute, 0, len(la)+1)
			for _, x := range la {
				switch x.Type & attrTypeMask {
				case unix.NFTA_LOOKUP_SET:
					if v, ok := ids[cstring(x.Data)]; ok {
						id, found = v, true
						x = netlink.Attribute{Type: x.Type, Data: []byte(anonTemplate + "\x00")}
					}
				case unix.NFTA_LOOKUP_SET_ID:
					continue
				}
				nl = append(nl, x)
			}
			if !found {
				continue
			}
			nl = append(nl, netlink.Attribute{Type: unix.NFTA_LOOKUP_SET_ID, Data: binary.BigEndian.AppendUint32(nil, id)})
			nd, err := netlink.MarshalAttributes(nl)
			if err != nil {
				return nil, err
			}
			ne, err := netlink.MarshalAttributes([]netlink.Attribute{
				{Type: unix.NFTA_EXPR_NAME, Data: append([]byte(name), 0)},
				{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: nd},
			})
			if err != nil {
				return nil, err
			}
			elems[i].Data, elems[i].Length = ne, 0
		}
		ed, err := netlink.MarshalAttributes(elems)
		if err != nil {
			return nil, err
		}
		out = append(out, netlink.Attribute{Type: a.Type, Data: ed})
	}
	return out, nil
}

// anonTemplate is the name of a new anonymous set: the kernel replaces %d.
const anonTemplate = "__set%d"

// Set attributes x/sys/unix does not name.
const (
	nftaSetExpr        = 0x11
	nftaSetExpressions = 0x12
)

// setCopyMessages builds NEWSET and NEWSETELEM messages that create a copy
// of an anonymous set (its dumped attributes and elements) under id.
func setCopyMessages(fam byte, table string, setAttrs []netlink.Attribute, elems []netlink.Attribute, id uint32) ([]netlink.Message, error) {
	keep := []netlink.Attribute{{Type: unix.NFTA_SET_NAME, Data: []byte(anonTemplate + "\x00")}}
	for _, a := range setAttrs {
		// What NFT_MSG_NEWSET takes; a dump also carries the handle, the
		// backend type and the element count, which it refuses.
		switch a.Type & attrTypeMask {
		case unix.NFTA_SET_TABLE, unix.NFTA_SET_FLAGS, unix.NFTA_SET_KEY_TYPE, unix.NFTA_SET_KEY_LEN,
			unix.NFTA_SET_DATA_TYPE, unix.NFTA_SET_DATA_LEN, unix.NFTA_SET_POLICY, unix.NFTA_SET_DESC,
			unix.NFTA_SET_TIMEOUT, unix.NFTA_SET_GC_INTERVAL, unix.NFTA_SET_USERDATA, unix.NFTA_SET_OBJ_TYPE,
			nftaSetExpr, nftaSetExpressions:
			keep = append(keep, a)
		}
	}
	keep = append(keep, netlink.Attribute{Type: unix.NFTA_SET_ID, Data: binary.BigEndian.AppendUint32(nil, id)})
	sd, err := netlink.MarshalAttributes(keep)
	if err != nil {
		return nil, fmt.Errorf("encoding a set copy: %w", err)
	}
	msgs := []netlink.Message{nftnl.Message(unix.NFT_MSG_NEWSET, netlink.Create, fam, sd)}
	if len(elems) == 0 {
		return msgs, nil
	}
	list, err := netlink.MarshalAttributes(elems)
	if err != nil {
		return nil, fmt.Errorf("encoding set elements: %w", err)
	}
	ed, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(anonTemplate + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET_ID, Data: binary.BigEndian.AppendUint32(nil, id)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding set elements: %w", err)
	}
	return append(msgs, nftnl.Message(unix.NFT_MSG_NEWSETELEM, netlink.Create, fam, ed)), nil
}
