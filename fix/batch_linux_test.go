//go:build linux

package fix

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/nftnl/nftnltest"
	"github.com/snatrace/snatrace/tool"
)

// The rules of the fake kernel, with the nft command that makes each.
var (
	// nft add table ip nat; nft add chain ip nat POSTROUTING '{ type nat hook postrouting priority srcnat; }'
	natChain = nftnltest.Chain{Family: unix.NFPROTO_IPV4, Table: "nat", Name: "POSTROUTING", Handle: 1, Hook: unix.NF_INET_POST_ROUTING, Priority: 100, Type: "nat"}
	// nft add rule ip nat POSTROUTING ip saddr 10.0.0.0/8 counter masquerade
	plainMasq = []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 0, 0}},
		&expr.Counter{Packets: 7, Bytes: 420},
		&expr.Masq{},
	}
	// nft add rule ip nat POSTROUTING ip saddr 10.1.0.0/16 masquerade fully-random
	fixedMasq = []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 1, 0, 0}},
		&expr.Masq{FullyRandom: true},
	}
)

func fakeKernel() *nftnltest.Kernel {
	return &nftnltest.Kernel{Gen: 41, Chains: []nftnltest.Chain{natChain}, Rules: []nftnltest.Rule{
		{Family: unix.NFPROTO_IPV4, Table: "nat", Chain: "POSTROUTING", Handle: 4, Exprs: plainMasq, UserData: []byte{0, 5, 'p', 'o', 'd', 's', 0}},
		{Family: unix.NFPROTO_IPV4, Table: "nat", Chain: "POSTROUTING", Handle: 5, Exprs: fixedMasq},
	}}
}

func fakeFixer(k *nftnltest.Kernel) *Fixer {
	// No iptables tool is installed: only nftables netlink is read.
	return New(Config{Runner: &tool.Fake{Installed: []string{}}, Nftables: []nftnl.Option{nftnl.WithTestDial(k.Func())}})
}

// TestApplyBatchBytes plans and applies against a fake kernel and compares
// the batch byte for byte: one replace of handle 4 with its own expressions,
// counters and user data, only the masq flags added, guarded by the plan's
// generation.
func TestApplyBatchBytes(t *testing.T) {
	k := fakeKernel()
	f := fakeFixer(k)
	ctx := context.Background()
	p, res, err := f.ApplyFresh(ctx, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Handle != 4 || p.Generation != 41 || len(res.Applied) != 1 {
		t.Fatalf("plan %+v, result %+v: want handle 4 changed at generation 41", p, res)
	}
	if b := k.Batches(); len(b) != 1 || len(b[0]) != 1 {
		t.Fatalf("batches %+v: want one batch of one message", b)
	}
	got := k.Batches()[0][0]

	// nft replace rule ip nat POSTROUTING handle 4 ip saddr 10.0.0.0/8 counter packets 7 bytes 420 masquerade fully-random
	var elems []netlink.Attribute
	for _, e := range plainMasq[:4] {
		b, err := expr.Marshal(unix.NFPROTO_IPV4, e)
		if err != nil {
			t.Fatal(err)
		}
		elems = append(elems, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	masq := mustAttrs(t,
		netlink.Attribute{Type: unix.NFTA_EXPR_NAME, Data: []byte("masq\x00")},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: mustAttrs(t,
			netlink.Attribute{Type: unix.NFTA_MASQ_FLAGS, Data: binary.BigEndian.AppendUint32(nil, unix.NF_NAT_RANGE_PROTO_RANDOM_FULLY)})},
	)
	elems = append(elems, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: masq})
	want := nftnl.Message(unix.NFT_MSG_NEWRULE, netlink.Acknowledge|netlink.Replace, unix.NFPROTO_IPV4, mustAttrs(t,
		netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: []byte("nat\x00")},
		netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: []byte("POSTROUTING\x00")},
		netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: binary.BigEndian.AppendUint64(nil, 4)},
		netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: mustAttrs(t, elems...)},
		netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: []byte{0, 5, 'p', 'o', 'd', 's', 0}},
	))
	if got.Header.Type != want.Header.Type || got.Header.Flags != want.Header.Flags {
		t.Errorf("header %+v, want type %v flags %v", got.Header, want.Header.Type, want.Header.Flags)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Errorf("replace message\n got %x\nwant %x", got.Data, want.Data)
	}
}

// TestApplyFreshOneSocket: an ApplyFresh sends its read, plan, commit and
// check over one socket (a close after a commit would hold the kernel's
// commit lock for a grace period): the fake kernel sees one run of
// sequence numbers. A Fixer's requests outside an ApplyFresh each open
// their own.
func TestApplyFreshOneSocket(t *testing.T) {
	k := fakeKernel()
	f := fakeFixer(k)
	ctx := context.Background()
	if _, res, err := f.ApplyFresh(ctx, "", 1); err != nil || len(res.Applied) != 1 {
		t.Fatalf("apply: %v %+v", err, res)
	}
	seqs := k.Sequences()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("message %d of %d came over another socket: sequence numbers %v", i, len(seqs), seqs)
		}
	}
	if len(seqs) < 5 || len(k.Batches()) != 1 {
		t.Fatalf("%d messages, %d batches: want the read, the plan's reads and one commit", len(seqs), len(k.Batches()))
	}
	if f.shared != nil {
		t.Error("the shared socket outlives the ApplyFresh")
	}
	before := len(seqs)
	if _, err := f.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if seqs = k.Sequences(); len(seqs) <= before+1 || seqs[before] == seqs[before-1]+1 {
		t.Errorf("a plan after the ApplyFresh went on over its socket: %v", seqs[before-1:])
	}
}

func mustAttrs(t *testing.T, as ...netlink.Attribute) []byte {
	t.Helper()
	b, err := netlink.MarshalAttributes(as)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestApplyStaleGeneration: a commit between plan and apply changes the
// generation; the fix sends nothing. A batch the kernel refuses (ERESTART)
// is ErrStale too.
func TestApplyStaleGeneration(t *testing.T) {
	k := fakeKernel()
	f := fakeFixer(k)
	ctx := context.Background()
	p, err := f.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k.Gen++
	if _, err := f.Apply(ctx, p, ""); !errors.Is(err, ErrStale) {
		t.Fatalf("apply after a commit: %v, want ErrStale", err)
	}
	if n := len(k.Batches()); n != 0 {
		t.Fatalf("%d batches sent for a stale plan", n)
	}
	p, err = f.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k.Refuse = unix.ERESTART
	if _, err := f.Apply(ctx, p, ""); !errors.Is(err, ErrStale) {
		t.Fatalf("a refused batch: %v, want ErrStale", err)
	}
}

// TestApplySavedRefusesTampering: a saved plan applies only as snatrace
// computes it now; an edited one changes nothing.
func TestApplySavedRefusesTampering(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		edit func(*Plan)
		want error
	}{
		{"untouched", func(*Plan) {}, nil},
		{"other handle", func(p *Plan) { p.Changes[0].Handle = 5; p.Changes[0].Position = 2 }, ErrStale},
		{"other text", func(p *Plan) { p.Changes[0].Before = "ip saddr 10.0.0.0/8 accept" }, ErrTampered},
		{"not fully-random", func(p *Plan) { p.Changes[0].To = "masquerade random" }, ErrTampered},
		{"other generation", func(p *Plan) { p.Generation = 3 }, ErrStale},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := fakeKernel()
			f := fakeFixer(k)
			p, err := f.Plan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(p)
			_, err = f.ApplySaved(ctx, p, "")
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("ApplySaved = %v, want %v", err, tt.want)
			}
			if sent := len(k.Batches()); (tt.want == nil) != (sent == 1) {
				t.Fatalf("%d batches sent", sent)
			}
		})
	}
}
