//go:build linux

package ctstat

import (
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns"
)

// ReadNetlink reads the per-CPU counters, the entry count and the table size
// of network namespace ns (nil: the calling thread's) through ctnetlink. It
// needs CAP_NET_ADMIN in the owning user namespace of the network namespace;
// without it the error wraps unix.EPERM.
func ReadNetlink(ns *netns.NS) (Snapshot, error) {
	c, err := dial(ns)
	if err != nil {
		return Snapshot{}, err
	}
	defer c.Close()
	return readSnapshot(c)
}

// readSnapshot reads the per-CPU statistics and the global ones on c.
func readSnapshot(c *netlink.Conn) (Snapshot, error) {
	msgs, err := queryStatsCPU(c)
	if err != nil {
		return Snapshot{}, err
	}
	cpus, err := DecodeStatsCPU(msgs)
	if err != nil {
		return Snapshot{}, fmt.Errorf("decoding ctnetlink per-CPU statistics: %w", err)
	}
	if len(cpus) == 0 {
		return Snapshot{}, ErrNoCPUs
	}
	g, err := readGlobal(c)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Source: SourceNetlink, Entries: g.Entries, Max: g.Max, CPUs: cpus}, nil
}

// NetlinkReader reads the statistics of one namespace over a ctnetlink
// socket it keeps between reads, for a caller that reads often (the
// exporter, at every scrape): opening a socket, inside a namespace at that,
// costs more than the read. A failed read closes the socket; the next read
// opens a new one. It is safe for concurrent use, one read at a time.
type NetlinkReader struct {
	ns *netns.NS
	mu sync.Mutex
	c  *netlink.Conn
}

// NewNetlinkReader returns a reader of namespace ns (nil: the caller's).
func NewNetlinkReader(ns *netns.NS) *NetlinkReader { return &NetlinkReader{ns: ns} }

// Read is ReadNetlink on the kept socket.
func (r *NetlinkReader) Read() (Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		c, err := dial(r.ns)
		if err != nil {
			return Snapshot{}, err
		}
		r.c = c
	} else if err := r.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		r.closeLocked()
		return Snapshot{}, fmt.Errorf("setting a ctnetlink deadline: %w", err)
	}
	s, err := readSnapshot(r.c)
	if err != nil {
		r.closeLocked()
	}
	return s, err
}

// Close closes the kept socket.
func (r *NetlinkReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
	return nil
}

func (r *NetlinkReader) closeLocked() {
	if r.c != nil {
		r.c.Close()
		r.c = nil
	}
}

// ReadNetlinkGlobal reads the entry count and the table size (nf_conntrack_max)
// of a network namespace through ctnetlink; ns as for ReadNetlink.
func ReadNetlinkGlobal(ns *netns.NS) (Global, error) {
	c, err := dial(ns)
	if err != nil {
		return Global{}, err
	}
	defer c.Close()
	return readGlobal(c)
}

// queryStatsCPU returns the kernel's raw replies, one message per CPU.
func queryStatsCPU(c *netlink.Conn) ([]netlink.Message, error) {
	msgs, err := c.Execute(request(msgGetStatsCPU, netlink.Dump))
	if err != nil {
		return nil, fmt.Errorf("querying ctnetlink per-CPU statistics: %w", err)
	}
	return msgs, nil
}

// timeout bounds one read of the statistics: the kernel answers at once.
const timeout = 10 * time.Second

func dial(ns *netns.NS) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns.Fd()})
	if err != nil {
		return nil, fmt.Errorf("opening ctnetlink socket in %s: %w", ns, err)
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		c.Close()
		return nil, fmt.Errorf("setting a ctnetlink deadline: %w", err)
	}
	return c, nil
}

// ReadProcIn reads the statistics of namespace ns (nil: the caller's
// thread's) from /proc, by column name, on a thread inside it.
func ReadProcIn(ns *netns.NS) (s Snapshot, err error) {
	err = ns.Do(func() error { s, err = ReadProc(ProcPath); return err })
	return s, err
}

// ReadMaxIn reads nf_conntrack_max of namespace ns (nil: the caller's
// thread's) on a thread inside it.
func ReadMaxIn(ns *netns.NS) (v uint64, err error) {
	err = ns.Do(func() error { v, err = ReadMax(""); return err })
	return v, err
}

// readGlobal asks with NLM_F_ACK: the kernel marks its single reply
// NLM_F_MULTI without a closing NLMSG_DONE, and only the ACK ends the read.
func readGlobal(c *netlink.Conn) (Global, error) {
	msgs, err := c.Execute(request(msgGetStats, netlink.Acknowledge))
	if err != nil {
		return Global{}, fmt.Errorf("querying ctnetlink statistics: %w", err)
	}
	var stats []netlink.Message // without the ACK
	for _, m := range msgs {
		if m.Header.Type != netlink.Error {
			stats = append(stats, m)
		}
	}
	if len(stats) != 1 {
		return Global{}, fmt.Errorf("querying ctnetlink statistics: %d replies, want 1", len(stats))
	}
	g, err := DecodeStats(stats[0])
	if err != nil {
		return Global{}, fmt.Errorf("decoding ctnetlink statistics: %w", err)
	}
	return g, nil
}

func request(typ uint16, flags netlink.HeaderFlags) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysCTNetlink<<8 | typ),
			Flags: netlink.Request | flags,
		},
		// nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
		Data: []byte{unix.AF_UNSPEC, 0, 0, 0},
	}
}
