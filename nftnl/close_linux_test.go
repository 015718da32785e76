//go:build linux

package nftnl_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/nftnl"
	"github.com/snatrace/snatrace/nftnl/nftnltest"
)

// TestCloseReleasesSockets: Close, which leaves the closing to another
// goroutine, still releases every socket. Twenty sockets, each closed
// right after a commit (when the kernel makes a close wait for the
// commit's objects to be freed), are all gone from the process within
// seconds. (That Close does not wait is a speed, measured in
// BENCHMARKS.md, not asserted here.)
func TestCloseReleasesSockets(t *testing.T) {
	ns := netnstest.New(t, "nlclose")
	netnstest.Run(t, ns, "add table ip t\nadd chain ip t c\nadd rule ip t c counter\n", "nft", "-f", "-")
	before := testenv.OpenFDs(t)
	for i := 0; i < 20; i++ {
		c, err := nftnl.Dial(nftnl.WithNetNS(ns))
		if err != nil {
			t.Fatal(err)
		}
		gen, err := c.Generation()
		if err != nil {
			t.Fatal(err)
		}
		// A flush of the chain: the commit frees a rule.
		attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: []byte("t\x00")},
			{Type: unix.NFTA_RULE_CHAIN, Data: []byte("c\x00")},
		})
		if err := c.SendBatch(gen, []netlink.Message{nftnl.Message(unix.NFT_MSG_DELRULE, netlink.Request, unix.NFPROTO_IPV4, attrs)}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		netnstest.Run(t, ns, "", "nft", "add", "rule", "ip", "t", "c", "counter")
	}
	var now int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if now = testenv.OpenFDs(t); now <= before {
			return
		}
	}
	t.Errorf("%d files open 5 s after closing every socket, %d before", now, before)
}

// TestShared: a Conn of Shared sends over its owner's socket, and its
// Close leaves that socket open for the owner.
func TestShared(t *testing.T) {
	ns := netnstest.New(t, "nlshare")
	c, err := nftnl.Dial(nftnl.WithNetNS(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := nftnl.Dial(nftnl.WithNetNS(nil), nftnl.Shared(c))
	if err != nil {
		t.Fatal(err)
	}
	if b.Raw() != c.Raw() {
		t.Fatal("a Conn of Shared has a socket of its own")
	}
	b.Close()
	time.Sleep(50 * time.Millisecond) // a Close that closed would have by now
	if _, err := c.Generation(); err != nil {
		t.Fatalf("the owner's socket after a borrower's Close: %v", err)
	}
}

// TestSharedAfterFailure: a request that fails on a shared socket may
// leave part of its answer unread, so a Shared dial after it opens a
// socket of its own; a batch refused for its generation is answered whole
// and leaves the socket shared.
func TestSharedAfterFailure(t *testing.T) {
	k := &nftnltest.Kernel{Gen: 3, Refuse: unix.ERESTART}
	c, err := nftnl.Dial(nftnl.WithTestDial(k.Func()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := nftnl.Dial(nftnl.Shared(c))
	msg := nftnl.Message(unix.NFT_MSG_NEWRULE, netlink.Replace, unix.NFPROTO_IPV4, nil)
	if err := b.SendBatch(3, []netlink.Message{msg}); !errors.Is(err, nftnl.ErrGeneration) {
		t.Fatalf("refused batch: %v, want ErrGeneration", err)
	}
	if b, _ = nftnl.Dial(nftnl.Shared(c)); b.Raw() != c.Raw() {
		t.Fatal("a refused generation spoilt the shared socket")
	}
	if _, err := b.Get(unix.NFT_MSG_GETOBJ, unix.NFPROTO_IPV4, nil); err == nil {
		t.Fatal("the fake kernel answered a request it does not know")
	}
	b, _ = nftnl.Dial(nftnl.WithTestDial(k.Func()), nftnl.Shared(c))
	if b.Raw() == c.Raw() {
		t.Error("a Shared dial after a failed request reuses the socket")
	}
	b.Close()
}
