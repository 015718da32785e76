//go:build linux

package nftnl_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/nftnl/nftnltest"
)

func TestGenerationAndDump(t *testing.T) {
	k := &nftnltest.Kernel{Gen: 7, Rules: []nftnltest.Rule{
		// nft add rule ip nat POSTROUTING masquerade
		{Family: unix.NFPROTO_IPV4, Table: "nat", Chain: "POSTROUTING", Handle: 4, Exprs: []expr.Any{&expr.Masq{}}},
		// nft add rule ip nat OTHER counter
		{Family: unix.NFPROTO_IPV4, Table: "nat", Chain: "OTHER", Handle: 5, Exprs: []expr.Any{&expr.Counter{}}},
		// nft add rule ip6 nat POSTROUTING masquerade fully-random
		{Family: unix.NFPROTO_IPV6, Table: "nat", Chain: "POSTROUTING", Handle: 6, Exprs: []expr.Any{&expr.Masq{FullyRandom: true}}},
	}}
	c, err := nftnl.Dial(nftnl.WithTestDial(k.Func()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g, err := c.Generation(); err != nil || g != 7 {
		t.Fatalf("Generation = %d, %v; want 7", g, err)
	}
	var n int
	gen, err := c.Consistent(func() (bool, error) {
		msgs, intr, err := c.Dump(unix.NFT_MSG_GETRULE, unix.NFPROTO_IPV4, []netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: []byte("nat\x00")},
			{Type: unix.NFTA_RULE_CHAIN, Data: []byte("POSTROUTING\x00")},
		})
		n = len(msgs)
		return intr, err
	})
	if err != nil || gen != 7 || n != 1 {
		t.Fatalf("Consistent dump: gen %d, %d rules, %v; want gen 7 and 1 rule", gen, n, err)
	}
}

func TestConsistentGivesUp(t *testing.T) {
	k := &nftnltest.Kernel{}
	c, _ := nftnl.Dial(nftnl.WithTestDial(k.Func()))
	reads := 0
	_, err := c.Consistent(func() (bool, error) { reads++; k.Gen++; return false, nil })
	if !errors.Is(err, nftnl.ErrChanging) || reads != nftnl.MaxTries {
		t.Fatalf("Consistent = %v after %d reads, want ErrChanging after %d", err, reads, nftnl.MaxTries)
	}
}

func TestSendBatch(t *testing.T) {
	k := &nftnltest.Kernel{Gen: 3}
	c, _ := nftnl.Dial(nftnl.WithTestDial(k.Func()))
	msg := nftnl.Message(unix.NFT_MSG_NEWRULE, netlink.Replace, unix.NFPROTO_IPV4, nil)
	if err := c.SendBatch(3, []netlink.Message{msg, msg}); err != nil {
		t.Fatal(err)
	}
	b := k.Batches()
	if len(b) != 1 || len(b[0]) != 2 || b[0][0].Header.Flags&netlink.Acknowledge != 0 || b[0][1].Header.Flags&netlink.Acknowledge == 0 {
		t.Fatalf("batch %+v: want two messages, only the last acked", b)
	}
	k.Refuse = unix.ERESTART
	if err := c.SendBatch(3, []netlink.Message{msg}); !errors.Is(err, nftnl.ErrGeneration) {
		t.Fatalf("a refused batch gave %v, want ErrGeneration", err)
	}
}

func TestFamilies(t *testing.T) {
	for _, f := range []string{"ip", "ip6", "inet", "arp", "bridge", "netdev"} {
		n, ok := nftnl.FamilyNumber(f)
		if !ok || nftnl.FamilyName(n) != f {
			t.Errorf("family %s: %d %v", f, n, ok)
		}
	}
	if n, _ := nftnl.FamilyNumber("ip"); n != unix.NFPROTO_IPV4 {
		t.Errorf("ip is %d", n)
	}
	if nftnl.HookName("ip", 4) != "postrouting" || nftnl.HookName("netdev", 0) != "ingress" {
		t.Error("HookName is wrong")
	}
}

func TestBatchCarriesGeneration(t *testing.T) {
	msgs := nftnl.Batch(77, []netlink.Message{{}})
	if len(msgs) != 3 || msgs[0].Header.Type != unix.NFNL_MSG_BATCH_BEGIN || msgs[2].Header.Type != unix.NFNL_MSG_BATCH_END {
		t.Fatalf("batch %+v", msgs)
	}
	if binary.BigEndian.Uint16(msgs[0].Data[2:4]) != unix.NFNL_SUBSYS_NFTABLES {
		t.Error("batch begin must name the nftables subsystem")
	}
	attrs, _ := netlink.UnmarshalAttributes(msgs[0].Data[4:])
	if len(attrs) != 1 || attrs[0].Type != unix.NFNL_BATCH_GENID || binary.BigEndian.Uint32(attrs[0].Data) != 77 {
		t.Errorf("genid attribute %+v", attrs)
	}
}
