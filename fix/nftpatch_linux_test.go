//go:build linux

package fix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleOf builds a dumped rule (as the kernel sends it) from expressions.
func ruleOf(t testing.TB, fam byte, exprs ...expr.Any) rawRule {
	t.Helper()
	var elems []netlink.Attribute
	for _, e := range exprs {
		b, err := expr.Marshal(fam, e)
		if err != nil {
			t.Fatal(err)
		}
		elems = append(elems, netlink.Attribute{Type: unix.NFTA_LIST_ELEM, Data: b})
	}
	eb, err := netlink.MarshalAttributes(elems)
	if err != nil {
		t.Fatal(err)
	}
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte("t\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte("c\x00")},
		{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, 42)},
		{Type: unix.NFTA_RULE_EXPRESSIONS, Data: eb},
		{Type: unix.NFTA_RULE_POSITION, Data: binary.BigEndian.AppendUint64(nil, 41)},
		{Type: unix.NFTA_RULE_USERDATA, Data: []byte{0, 4, 'p', 'o', 'd', 0}},
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseRawRule(append([]byte{fam, 0, 0, 0}, data...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// exprsOf decodes the expressions of attrs (element i as e[i]'s type).
func exprElems(t testing.TB, attrs []netlink.Attribute) [][]byte {
	t.Helper()
	for _, a := range attrs {
		if a.Type&attrTypeMask == unix.NFTA_RULE_EXPRESSIONS {
			elems, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, e := range elems {
				out = append(out, e.Data)
			}
			return out
		}
	}
	t.Fatal("no expressions")
	return nil
}

func decodeAs(t testing.TB, fam byte, elem []byte, e expr.Any) {
	t.Helper()
	_, data, err := exprParts(elem)
	if err != nil {
		t.Fatal(err)
	}
	if err := expr.Unmarshal(fam, data, e); err != nil {
		t.Fatal(err)
	}
}

func orFully(old uint32) uint32 { return old | flagsFullyR }

func TestSetNATFlags(t *testing.T) {
	match := []expr.Any{
		// ip saddr 10.0.0.0/8
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 0, 0}},
		&expr.Counter{Bytes: 1234, Packets: 5},
	}
	compat := xt.NatIPv4MultiRangeCompat{{Flags: uint(unix.NF_NAT_RANGE_PROTO_SPECIFIED), MinIP: net.IPv4zero, MaxIP: net.IPv4zero, MinPort: 1024, MaxPort: 2047}}
	range6 := make(xt.Unknown, 40) // nf_nat_range: flags, min/max addr, min/max proto
	binary.NativeEndian.PutUint32(range6[0:], unix.NF_NAT_RANGE_MAP_IPS|unix.NF_NAT_RANGE_PERSISTENT)
	copy(range6[4:], net.ParseIP("2001:db8::1"))
	copy(range6[20:], net.ParseIP("2001:db8::1"))
	tests := []struct {
		name     string // and the nft statement
		fam      byte
		nat      expr.Any
		kind     natKind
		old      uint32
		check    func(t *testing.T, elem []byte)
		infoFlag int // offset of the flags in xt info, -1 for none
	}{
		{"masquerade", unix.NFPROTO_IPV4, &expr.Masq{}, natMasq, 0, func(t *testing.T, b []byte) {
			var m expr.Masq
			decodeAs(t, unix.NFPROTO_IPV4, b, &m)
			if !m.FullyRandom || m.Random || m.Persistent {
				t.Errorf("masq %+v", m)
			}
		}, -1},
		{"masquerade random", unix.NFPROTO_IPV4, &expr.Masq{Random: true}, natMasq, unix.NF_NAT_RANGE_PROTO_RANDOM, func(t *testing.T, b []byte) {
			var m expr.Masq
			decodeAs(t, unix.NFPROTO_IPV4, b, &m)
			if !m.FullyRandom || !m.Random {
				t.Errorf("masq %+v", m)
			}
		}, -1},
		{"snat to 192.0.2.1 persistent", unix.NFPROTO_IPV4, &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, Persistent: true}, natSNAT, unix.NF_NAT_RANGE_PERSISTENT, func(t *testing.T, b []byte) {
			var n expr.NAT
			decodeAs(t, unix.NFPROTO_IPV4, b, &n)
			if !n.FullyRandom || !n.Persistent || n.Random || n.RegAddrMin != 1 {
				t.Errorf("nat %+v", n)
			}
		}, -1},
		// iptables-nft: -j MASQUERADE --to-ports 1024-2047 (IPv4, revision 0).
		{"xt MASQUERADE", unix.NFPROTO_IPV4, &expr.Target{Name: "MASQUERADE", Rev: 0, Info: &compat}, natXTMasq, unix.NF_NAT_RANGE_PROTO_SPECIFIED, func(t *testing.T, b []byte) {
			var tg expr.Target
			decodeAs(t, unix.NFPROTO_IPV4, b, &tg)
			r := (*tg.Info.(*xt.NatIPv4MultiRangeCompat))[0]
			if r.Flags != uint(unix.NF_NAT_RANGE_PROTO_SPECIFIED|unix.NF_NAT_RANGE_PROTO_RANDOM_FULLY) || r.MinPort != 1024 || r.MaxPort != 2047 {
				t.Errorf("xt range %+v", r)
			}
		}, 4},
		// ip6tables-nft: -j SNAT --to-source 2001:db8::1 --persistent (revision 1).
		{"xt SNAT ip6", unix.NFPROTO_IPV6, &expr.Target{Name: "SNAT", Rev: 1, Info: &range6}, natXTSNAT, unix.NF_NAT_RANGE_MAP_IPS | unix.NF_NAT_RANGE_PERSISTENT, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exprs := append(append([]expr.Any(nil), match...), tt.nat)
			r := ruleOf(t, tt.fam, exprs...)
			attrs, res, err := setNATFlags(r, orFully)
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != tt.kind || res.OldFlags != tt.old || res.NewFlags != tt.old|flagsFullyR {
				t.Errorf("result %+v, want kind %s old %#x", res, tt.kind, tt.old)
			}
			// Table, chain, handle, position, user data and every
			// expression but the NAT one are byte-identical.
			for i, a := range attrs {
				if a.Type&attrTypeMask != unix.NFTA_RULE_EXPRESSIONS && !bytes.Equal(a.Data, r.Attrs[i].Data) {
					t.Errorf("attribute %d changed", a.Type)
				}
			}
			before, after := exprElems(t, r.Attrs), exprElems(t, attrs)
			for i := range match {
				if !bytes.Equal(before[i], after[i]) {
					t.Errorf("expression %d changed", i)
				}
			}
			nat := after[len(after)-1]
			if tt.check != nil {
				tt.check(t, nat)
			}
			if tt.infoFlag >= 0 {
				// Only the four flag bytes of the xt info differ.
				oi, ni := targetInfo(t, before[len(before)-1]), targetInfo(t, nat)
				if len(oi) != len(ni) {
					t.Fatalf("info %d bytes, was %d", len(ni), len(oi))
				}
				for i := range oi {
					inFlags := i >= tt.infoFlag && i < tt.infoFlag+4
					if oi[i] != ni[i] && !inFlags {
						t.Errorf("info byte %d changed", i)
					}
				}
				if got := binary.NativeEndian.Uint32(ni[tt.infoFlag:]); got != tt.old|flagsFullyR {
					t.Errorf("info flags %#x", got)
				}
			}
			// Setting the old flags back gives the original bytes.
			back := rawRule{Family: r.Family, Table: r.Table, Chain: r.Chain, Handle: r.Handle, Attrs: attrs}
			orig, _, err := setNATFlags(back, func(uint32) uint32 { return tt.old })
			if err != nil {
				t.Fatal(err)
			}
			if tt.kind != natMasq && tt.kind != natSNAT || tt.old != 0 {
				if !bytes.Equal(exprElems(t, orig)[len(match)], before[len(match)]) {
					t.Error("rollback flags do not give the original expression back")
				}
			}
			m, err := replaceMessage(r, attrs)
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.Flags != netlink.Request|netlink.Acknowledge|netlink.Replace {
				t.Errorf("flags %v", m.Header.Flags)
			}
			ma, _ := netlink.UnmarshalAttributes(m.Data[4:])
			for _, a := range ma {
				if a.Type&attrTypeMask == unix.NFTA_RULE_POSITION {
					t.Error("a replacement must not carry a position")
				}
			}
		})
	}
}

func targetInfo(t *testing.T, elem []byte) []byte {
	t.Helper()
	_, data, err := exprParts(elem)
	if err != nil {
		t.Fatal(err)
	}
	attrs, _ := netlink.UnmarshalAttributes(data)
	for _, a := range attrs {
		if a.Type&attrTypeMask == unix.NFTA_TARGET_INFO {
			return a.Data
		}
	}
	t.Fatal("no info")
	return nil
}

func TestSetNATFlagsRefuses(t *testing.T) {
	v4 := byte(unix.NFPROTO_IPV4)
	tests := []struct {
		name  string
		exprs []expr.Any
		want  string
	}{
		{"dnat", []expr.Any{&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}}, "no source-NAT expression in the rule"},
		{"two", []expr.Any{&expr.Masq{}, &expr.Masq{}}, "2 source-NAT expressions in one rule"},
		{"anonymous dynset", []expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: "__set0", SetID: 1, Operation: 0}, &expr.Masq{}}, ErrAnonymousSet.Error()},
	}
	for _, tt := range tests {
		_, _, err := setNATFlags(ruleOf(t, v4, tt.exprs...), orFully)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, set := range []string{"nomasq", "__set0"} {
		r := ruleOf(t, v4, &expr.Lookup{SourceRegister: 1, SetName: set}, &expr.Masq{})
		if _, _, err := setNATFlags(r, orFully); errors.Is(err, ErrAnonymousSet) || err != nil {
			t.Errorf("a lookup of %s: %v", set, err)
		}
	}
}

func TestCompatAttr(t *testing.T) {
	tcp := &expr.Match{Name: "tcp", Info: &xt.Tcp{DstPorts: [2]uint16{80, 80}}}
	proto := func(op expr.CmpOp) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte{unix.IPPROTO_TCP}}}
	}
	tests := []struct {
		name        string // iptables rule
		exprs       []expr.Any
		ok          bool
		proto, flag uint32
	}{
		{"-p tcp -m tcp --dport 80 -j MASQUERADE", append(proto(expr.CmpOpEq), tcp, &expr.Masq{}), true, unix.IPPROTO_TCP, 0},
		{"! -p tcp -j MASQUERADE (xt)", append(proto(expr.CmpOpNeq), &expr.Target{Name: "MASQUERADE", Info: &xt.NatIPv4MultiRangeCompat{{MinIP: net.IPv4zero, MaxIP: net.IPv4zero}}}), true, unix.IPPROTO_TCP, unix.NFT_RULE_COMPAT_F_INV},
		{"-m tcp --dport 80 (no -p)", []expr.Any{tcp, &expr.Masq{}}, true, unix.IPPROTO_TCP, 0},
		{"nft: meta l4proto tcp masquerade", append(proto(expr.CmpOpEq), &expr.Masq{}), false, 0, 0},
	}
	for _, tt := range tests {
		r := ruleOf(t, unix.NFPROTO_IPV4, tt.exprs...)
		a, ok := compatAttr(r.Attrs, r.Family)
		if ok != tt.ok {
			t.Errorf("%s: compat %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		vals, _ := netlink.UnmarshalAttributes(a.Data)
		if len(vals) != 2 || binary.BigEndian.Uint32(vals[0].Data) != tt.proto || binary.BigEndian.Uint32(vals[1].Data) != tt.flag {
			t.Errorf("%s: compat %x", tt.name, a.Data)
		}
	}
}

func FuzzSetNATFlags(f *testing.F) {
	r := ruleOf(f, unix.NFPROTO_IPV4, &expr.Masq{Random: true})
	data, _ := netlink.MarshalAttributes(r.Attrs)
	f.Add(append([]byte{unix.NFPROTO_IPV4, 0, 0, 0}, data...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRawRule(b)
		if err != nil {
			return
		}
		attrs, res, err := setNATFlags(r, orFully)
		if err != nil {
			return
		}
		if res.NewFlags&flagsFullyR == 0 {
			t.Fatalf("flags %#x", res.NewFlags)
		}
		if _, err := replaceMessage(r, attrs); err != nil {
			t.Fatal(err)
		}
		compatAttr(attrs, r.Family)
	})
}

func TestAnonymousSetCopy(t *testing.T) {
	// ip saddr { 10.96.0.0/16, 10.97.0.0/16 } masquerade
	r := ruleOf(t, unix.NFPROTO_IPV4,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: "__set3", SetID: 3},
		&expr.Masq{})
	if got := anonLookups(r); len(got) != 1 || got[0] != "__set3" {
		t.Fatalf("anonLookups %q", got)
	}
	attrs, err := relinkLookups(r.Attrs, map[string]uint32{"__set3": 9})
	if err != nil {
		t.Fatal(err)
	}
	var l expr.Lookup
	decodeAs(t, unix.NFPROTO_IPV4, exprElems(t, attrs)[1], &l)
	if l.SetName != anonTemplate || l.SetID != 9 || l.SourceRegister != 1 {
		t.Errorf("relinked lookup %+v", l)
	}
	if !bytes.Equal(exprElems(t, attrs)[0], exprElems(t, r.Attrs)[0]) {
		t.Error("relinking changed another expression")
	}
	// A dumped set: table, name, handle, flags, key, type name, count.
	dumped := []netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: []byte("t\x00")},
		{Type: unix.NFTA_SET_NAME, Data: []byte("__set3\x00")},
		{Type: 0x10, Data: make([]byte, 8)},
		{Type: unix.NFTA_SET_FLAGS, Data: binary.BigEndian.AppendUint32(nil, unix.NFT_SET_ANONYMOUS|unix.NFT_SET_CONSTANT|unix.NFT_SET_INTERVAL)},
		{Type: unix.NFTA_SET_KEY_LEN, Data: binary.BigEndian.AppendUint32(nil, 4)},
		{Type: 0x13, Data: []byte("rbtree\x00")},
		{Type: 0x14, Data: binary.BigEndian.AppendUint32(nil, 1)},
	}
	elems := []netlink.Attribute{{Type: unix.NFTA_LIST_ELEM, Data: []byte{8, 0, 1, 0, 10, 96, 0, 0}}}
	msgs, err := setCopyMessages(unix.NFPROTO_IPV4, "t", dumped, elems, 9)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("set copy: %v %d messages", err, len(msgs))
	}
	sa, _ := netlink.UnmarshalAttributes(msgs[0].Data[4:])
	got := map[uint16][]byte{}
	for _, a := range sa {
		got[a.Type&attrTypeMask] = a.Data
	}
	if string(got[unix.NFTA_SET_NAME]) != anonTemplate+"\x00" || binary.BigEndian.Uint32(got[unix.NFTA_SET_ID]) != 9 || got[unix.NFTA_SET_FLAGS] == nil {
		t.Errorf("NEWSET %v", got)
	}
	for _, refused := range []uint16{0x10, 0x13, 0x14} {
		if _, ok := got[refused]; ok {
			t.Errorf("NEWSET carries attribute %#x, which the kernel refuses", refused)
		}
	}
	if msgs[1].Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM) {
		t.Errorf("second message %v", msgs[1].Header.Type)
	}
}

// A rule's fingerprint ignores its counter's values and sees everything
// else: its matches and its comment.
func TestRuleSum(t *testing.T) {
	elem := func(name string, data ...netlink.Attribute) netlink.Attribute {
		d, _ := netlink.MarshalAttributes(data)
		b, _ := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_EXPR_NAME, Data: append([]byte(name), 0)},
			{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: d},
		})
		return netlink.Attribute{Type: unix.NLA_F_NESTED | 1, Data: b} // NFTA_LIST_ELEM
	}
	rule := func(packets byte, saddr byte, comment string) rawRule {
		exprs, _ := netlink.MarshalAttributes([]netlink.Attribute{
			elem("cmp", netlink.Attribute{Type: 3, Data: []byte{10, saddr, 0, 0}}),
			elem("counter", netlink.Attribute{Type: unix.NFTA_COUNTER_PACKETS, Data: []byte{0, 0, 0, 0, 0, 0, 0, packets}}),
			elem("masq"),
		})
		return rawRule{Attrs: []netlink.Attribute{
			{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: exprs},
			{Type: unix.NFTA_RULE_USERDATA, Data: []byte(comment)},
		}}
	}
	sum := func(r rawRule) string {
		s, err := ruleSum(r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := sum(rule(1, 88, "a"))
	if sum(rule(200, 88, "a")) != base {
		t.Errorf("the counter's value changed the fingerprint")
	}
	if sum(rule(1, 99, "a")) == base || sum(rule(1, 88, "b")) == base {
		t.Errorf("another match or comment gave the same fingerprint")
	}
}
