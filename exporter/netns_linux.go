//go:build linux

package exporter

import (
	"fmt"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/netns"
)

// NetNS is an open network namespace to watch.
type NetNS struct {
	ns   *netns.NS
	Path string
}

// OpenNetNS opens a namespace by name (a file under /run/netns, as made by
// ip netns add) or by path (/proc/PID/ns/net, a bind mount).
func OpenNetNS(spec string) (*NetNS, error) {
	if spec == "" || spec == "." || spec == ".." {
		return nil, fmt.Errorf("opening network namespace %q: not a name", spec)
	}
	ns, err := netns.Open(spec)
	if err != nil {
		return nil, err
	}
	return &NetNS{ns: ns, Path: ns.Path()}, nil
}

// Close closes the namespace file.
func (n *NetNS) Close() error { return n.ns.Close() }

// FD is the namespace's file descriptor.
func (n *NetNS) FD() int { return n.ns.Fd() }

// Option returns the conntrack readers of the namespace: ctnetlink with a
// socket opened inside it, /proc and nf_conntrack_max read from an OS thread
// that enters it for the read.
func (n *NetNS) Option() Option {
	return WithConntrack(
		func() (ctstat.Snapshot, error) { return ctstat.ReadNetlink(n.FD()) },
		func() (s ctstat.Snapshot, err error) {
			err = n.ns.Do(func() error { s, err = ctstat.ReadProc(ctstat.ProcPath); return err })
			return s, err
		},
		func() (v uint64, err error) {
			err = n.ns.Do(func() error { v, err = ctstat.ReadMax(""); return err })
			return v, err
		},
	)
}
