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
type replyChecker struct {
	conns map[uint32]*conntrack.Conn // by namespace inode; nil: unreachable
}

func newReplyChecker() *replyChecker {
	return &replyChecker{conns: make(map[uint32]*conntrack.Conn)}
}

// taken reports whether a conntrack other than the dropped one holds the
// REPLY tuple of ev (the inverse of ev.NAT) in namespace ev.NetNS. ok is
// false when the namespace cannot be reached.
func (c *replyChecker) taken(ev Event) (taken, ok bool) {
	conn := c.conn(ev.NetNS)
	if conn == nil {
		return false, false
	}
	reply := conntrack.Tuple{
		IP: conntrack.IPTuple{
			SourceAddress:      ev.NAT.Dst.Addr(),
			DestinationAddress: ev.NAT.Src.Addr(),
		},
		Proto: conntrack.ProtoTuple{
			Protocol:        unix.IPPROTO_TCP,
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

func (c *replyChecker) conn(inode uint32) *conntrack.Conn {
	if conn, seen := c.conns[inode]; seen {
		return conn
	}
	c.conns[inode] = nil
	if own, err := (*netns.NS)(nil).Inode(); err == nil && own == inode {
		// This thread's own namespace needs no setns (and so no
		// CAP_SYS_ADMIN): the DaemonSet's case, hostNetwork.
		conn, err := conntrack.Dial(nil)
		if err == nil {
			c.conns[inode] = conn
		}
		return c.conns[inode]
	}
	ns, err := netns.OpenSpec(netns.Spec{Inode: inode})
	if err != nil {
		return nil
	}
	defer ns.Close() // the netlink socket keeps the namespace
	conn, err := conntrack.Dial(&netlink.Config{NetNS: ns.Fd()})
	if err != nil {
		return nil
	}
	c.conns[inode] = conn
	return conn
}

func (c *replyChecker) Close() error {
	var errs []error
	for _, conn := range c.conns {
		if conn != nil {
			errs = append(errs, conn.Close())
		}
	}
	clear(c.conns)
	return errors.Join(errs...)
}
