//go:build !linux

package nftnl

import (
	"github.com/mdlayher/netlink/nltest"

	"github.com/snatrace/snatrace/netns"
)

type config struct {
	ns   *netns.NS
	test nltest.Func
}
