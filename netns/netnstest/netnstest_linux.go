package netnstest

import (
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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

// LoadRules loads an iptables-restore document into ns with the named
// restore tool, first creating the ipsets its header names
// ("# ipsets: NAME:TYPE ...", "NAME:TYPE:inet6" for an IPv6 set), which
// rules with -m set need.
func LoadRules(t testing.TB, ns *netns.NS, doc, restore string) {
	t.Helper()
	for _, l := range strings.Split(doc, "\n") {
		sets, ok := strings.CutPrefix(l, "# ipsets:")
		if !ok {
			continue
		}
		for _, set := range strings.Fields(sets) {
			name, typ, _ := strings.Cut(set, ":")
			opts := netlink.IpsetCreateOptions{Replace: true}
			if t, ok := strings.CutSuffix(typ, ":inet6"); ok {
				typ, opts.Family = t, unix.AF_INET6
			}
			if err := ns.Do(func() error { return netlink.IpsetCreate(name, typ, opts) }); err != nil {
				t.Fatalf("ipset %s: %v", set, err)
			}
		}
	}
	Run(t, ns, doc, restore)
}

// WithRules is a fresh namespace (New) holding the rules file at path,
// loaded by LoadRules with the named restore tool.
func WithRules(t testing.TB, tag, path, restore string) *netns.NS {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ns := New(t, tag)
	LoadRules(t, ns, string(data), restore)
	return ns
}
