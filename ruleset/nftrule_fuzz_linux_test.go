package ruleset

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"github.com/snatrace/snatrace/natmodel"
	"golang.org/x/sys/unix"
)

// ruleMsg builds the payload of an NFT_MSG_NEWRULE message as the kernel
// sends it in a dump (nfgenmsg, then attributes), with google/nftables'
// own encoding of each expression.
func ruleMsg(t testing.TB, fam byte, table, chain string, handle uint64, exprs ...expr.Any) []byte {
	t.Helper()
	var list []netlink.Attribute
	for _, e := range exprs {
		b, err := expr.Marshal(fam, e)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	nested, err := netlink.MarshalAttributes(list)
	if err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 8)
	binary.BigEndian.PutUint64(h, handle)
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(chain), 0)},
		{Type: unix.NFTA_RULE_HANDLE, Data: h},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: nested},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, attrs...)
}

func masqFullyRandom(t testing.TB) []byte {
	return ruleMsg(t, unix.NFPROTO_IPV4, "nat", "POSTROUTING", 7,
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte("lo\x00")},
		&expr.Masq{FullyRandom: true})
}

func jumpRule(t testing.TB) []byte {
	return ruleMsg(t, unix.NFPROTO_IPV4, "nat", "POSTROUTING", 9,
		&expr.Verdict{Kind: expr.VerdictJump, Chain: "KUBE-POSTROUTING"})
}

// TestDecodeDumpRule decodes what the kernel would send for a masquerade
// rule and a jump, and renders the masquerade as nft text.
func TestDecodeDumpRule(t *testing.T) {
	r, err := decodeDumpRule(masqFullyRandom(t), interner{})
	if err != nil {
		t.Fatal(err)
	}
	if r.family != "ip" || r.table != "nat" || r.chain != "POSTROUTING" || r.handle != 7 || r.nat == nil || !r.complete {
		t.Fatalf("decoded %+v", r)
	}
	if m, ok := r.nat.Exprs[len(r.nat.Exprs)-1].(*expr.Masq); !ok || !m.FullyRandom {
		t.Errorf("last expression %#v, want masquerade fully-random", r.nat.Exprs[len(r.nat.Exprs)-1])
	}
	j, err := decodeDumpRule(jumpRule(t), interner{})
	if err != nil {
		t.Fatal(err)
	}
	if j.nat != nil || len(j.jumps) != 1 || j.jumps[0] != "KUBE-POSTROUTING" {
		t.Errorf("jump rule decoded as %+v", j)
	}
	text, err := ruleText(masqFullyRandom(t))
	if want := `oifname != "lo" masquerade fully-random`; err != nil || text != want {
		t.Errorf("ruleText: %q, %v; want %q", text, err, want)
	}
	// An IPv4 SNAT of revision 2 (nf_nat_range2), which google/nftables
	// v0.3.0 would read as the revision-0 range list.
	info := make([]byte, 44)
	binary.NativeEndian.PutUint32(info, uint32(natmodel.MapIPs|natmodel.ProtoSpecified|natmodel.ProtoRandomFully))
	copy(info[4:], []byte{192, 0, 2, 9})
	copy(info[20:], []byte{192, 0, 2, 10})
	binary.BigEndian.PutUint16(info[36:], 3000)
	binary.BigEndian.PutUint16(info[38:], 3100)
	raw := xt.Unknown(info)
	s2, err := decodeDumpRule(ruleMsg(t, unix.NFPROTO_IPV4, "nat", "POSTROUTING", 5, &expr.Target{Name: "SNAT", Rev: 2, Info: &raw}), interner{})
	if err != nil {
		t.Fatal(err)
	}
	rule, warn, ok := nftRuleOf(&Chain{Family: "ip", Table: "nat", Name: "POSTROUTING"}, 1, s2)
	if want := "snat to 192.0.2.9-192.0.2.10:3000-3100 fully-random"; !ok || warn != "" || !rule.NAT.FullyRandom || rule.NAT.String() != want {
		t.Errorf("SNAT rev 2: %q (%+v), warn %q; want %q", rule.NAT.String(), rule.NAT, warn, want)
	}
	if _, err := decodeDumpRule([]byte{2, 0}, interner{}); err == nil {
		t.Error("a 2-byte message decoded without an error")
	}
}

// FuzzDecodeDumpRule feeds the rule (and chain) decoders whatever a kernel
// or a corrupted reply could send: they return an error or a rule, never
// panic, and a rule they accept names its table and chain.
func FuzzDecodeDumpRule(f *testing.F) {
	f.Add(masqFullyRandom(f))
	f.Add(jumpRule(f))
	f.Add([]byte{2, 0, 0, 0})
	f.Add(ruleMsg(f, unix.NFPROTO_IPV4, "nat", "POSTROUTING", 3,
		&expr.Immediate{Register: 1, Data: []byte{192, 0, 2, 1}},
		&expr.Immediate{Register: 2, Data: []byte{0x07, 0xd0}},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Random: true, Persistent: true}))
	f.Add(ruleMsg(f, unix.NFPROTO_IPV4, "nat", "POSTROUTING", 4,
		&expr.Target{Name: "MASQUERADE", Rev: 0, Info: &xt.NatRange{Flags: 0x4}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeDumpRule(data, interner{})
		if err == nil && (r.table == "" || r.chain == "") {
			t.Errorf("accepted a rule without table or chain: %+v", r)
		}
		ruleText(data)
		decodeChain(data)
	})
}

// TestRuleComment reads nft's comment record and refuses records whose
// length runs past the user data (google/nftables' userdata.Get panics).
func TestRuleComment(t *testing.T) {
	for _, c := range []struct {
		udata []byte
		want  string
		ok    bool
	}{
		{userdata.AppendString(nil, userdata.TypeComment, "kube-proxy masquerade"), "kube-proxy masquerade", true},
		{userdata.AppendString(userdata.AppendUint32(nil, userdata.TypeEbtablesPolicy, 1), userdata.TypeComment, "x"), "x", true},
		{[]byte{byte(userdata.TypeComment), 50, 'a'}, "", false},
		{[]byte{byte(userdata.TypeEbtablesPolicy), 9, 0}, "", false},
		{nil, "", false},
	} {
		if got, ok := ruleComment(c.udata); got != c.want || ok != c.ok {
			t.Errorf("ruleComment(%x) = %q, %v; want %q, %v", c.udata, got, ok, c.want, c.ok)
		}
	}
}

// TestReadLiveOddUserData writes, with google/nftables, a masquerade rule
// whose user data is not nft's records (any program may set it: the
// kernel keeps it as opaque bytes) and checks that the live read still
// finds the rule instead of panicking in the comment lookup.
func TestReadLiveOddUserData(t *testing.T) {
	ns := labNS(t)
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Name: "odd", Family: nftables.TableFamilyIPv4})
	ch := c.AddChain(&nftables.Chain{Name: "post", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Masq{}},
		UserData: []byte{byte(userdata.TypeComment), 200, 'x'}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	rs, err := Read(context.Background(), ReadOptions{NS: ns})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 1 || rs.Rules[0].Chain != "post" || rs.Rules[0].NAT.FullyRandom {
		t.Fatalf("read %+v, want the one plain masquerade of chain post", rs.Rules)
	}
}
