//go:build linux

package nftnl_test

import (
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/nftnl"
)

// TestCloseReleasesSockets: Close returns before the kernel has released
// the socket, but releases it all the same. Twenty sockets, each closed
// right after a commit (when the kernel makes a close wait for the
// commit's objects to be freed), are all gone from the process within
// seconds: no socket leaks.
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
