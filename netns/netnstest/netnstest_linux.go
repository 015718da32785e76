package netnstest

import (
	"testing"

	"github.com/snatrace/snatrace/netns"
)

// Tracked is New with lo up and an nftables rule (table inet snt, a
// counter on new connections at output) that makes conntrack track the
// namespace: conntrack hooks a namespace only once a rule needs it.
func Tracked(t testing.TB, tag string) *netns.NS {
	t.Helper()
	ns := New(t, tag)
	h, err := ns.RouteHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	Run(t, ns, "table inet snt {\n chain out {\n  type filter hook output priority 0; ct state new counter\n }\n}\n", "nft", "-f", "-")
	return ns
}
