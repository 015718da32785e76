//go:build linux

package trace

import (
	"errors"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns"
)

// replyChecker answers, over ctnetlink in the namespace of a drop, whether
// another conntrack holds the dropped SYN's REPLY tuple. That is the
// definition of the SNAT race's drop, and it is what tells it apart, without
// the fexit program, from a firewall rule that dropped a source-NATed SYN
// before confirm: the loser was never inserted, so a conntrack found by its
// REPLY tuple is the winner.
//
// Its sockets are bounded (connCache): at most maxNamespaceConns namespaces,
// each closed after connIdle unused, so a deleted pod's namespace is
// released; an unreachable namespace is retried after openRetry. Namespaces
// are found by inode through a netns.Index, which rescans /proc at most once
// a second however many new namespaces drop SYNs.
type replyChecker struct {
	conns *connCache[*conntrack.Conn]
	index netns.Index
}

func newReplyChecker() *replyChecker {
	c := &replyChecker{}
	c.conns = newConnCache(c.dial)
	return c
}

// taken reports whether a conntrack other than the dropped one holds the
// REPLY tuple of ev (the inverse of ev.NAT) in namespace ev.NetNS. ok is
// false when the namespace cannot be reached.
func (c *replyChecker) taken(ev Event) (taken, ok bool) {
	conn, err := c.conns.get(ev.NetNS)
	if err != nil {
		return false, false
	}
	reply := conntrack.Tuple{
		IP: conntrack.IPTuple{
			SourceAddress:      ev.NAT.Dst.Addr(),
			DestinationAddress: ev.NAT.Src.Addr(),
		},
		Proto: conntrack.ProtoTuple{
			Protocol:        protoNumber(ev.Proto),
			SourcePort:      ev.NAT.Dst.Port(),
			DestinationPort: ev.NAT.Src.Port(),
		},
	}
	f, err := conn.Get(conntrack.Flow{TupleReply: reply})
	if err != nil {
		// ENOENT: nobody holds it. Any other error: cannot tell.
		return false, errors.Is(err, unix.ENOENT)
	}
	o := f.TupleOrig
	same := o.IP.SourceAddress == ev.Orig.Src.Addr() && o.Proto.SourcePort == ev.Orig.Src.Port() &&
		o.IP.DestinationAddress == ev.Orig.Dst.Addr() && o.Proto.DestinationPort == ev.Orig.Dst.Port()
	return !same, true
}

// dial opens a ctnetlink socket in the namespace with inode.
func (c *replyChecker) dial(inode uint32) (*conntrack.Conn, error) {
	if own, err := (*netns.NS)(nil).Inode(); err == nil && own == inode {
		// This thread's own namespace needs no setns (and so no
		// CAP_SYS_ADMIN): the DaemonSet's case, hostNetwork.
		return conntrack.Dial(nil)
	}
	ns, err := c.index.Open(inode)
	if err != nil {
		return nil, err
	}
	defer ns.Close() // the netlink socket keeps the namespace
	return conntrack.Dial(&netlink.Config{NetNS: ns.Fd()})
}

func (c *replyChecker) Close() error { return c.conns.Close() }

// protoNumber is the IP protocol number of an Event's Proto.
func protoNumber(p string) uint8 {
	if p == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}
