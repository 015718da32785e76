package nftnl

import (
	"github.com/mdlayher/netlink/nltest"

	"github.com/snatrace/snatrace/netns"
)

type config struct {
	ns     *netns.NS
	test   nltest.Func
	shared *Conn
}

// Shared makes Dial return a Conn over c's socket, whose Close leaves the
// socket open (c's owner closes it), whatever the other options say; once
// a request on that socket failed (it may have left part of its answer
// unread), Dial opens a socket of its own as the other options say. For
// requests made one after another from one goroutine, a round's read,
// commit and check: every close of a netfilter socket makes the kernel
// take the namespace's commit lock for a grace period (see Conn.Close),
// and a commit that comes after a close waits for it.
func Shared(c *Conn) Option { return func(cfg *config) { cfg.shared = c } }
