//go:build linux

package lab

import (
	"fmt"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/netstat"
	"github.com/snatrace/snatrace/netns"
)

// counters is what the kernel counted at one instant, in the lab's namespaces.
type counters struct {
	proc, netlink   ctstat.Snapshot // the node's conntrack statistics, both sources
	synRetrans      uint64          // Σ pods' TcpExt TCPSynRetrans
	listenOverflows uint64          // Σ servers' TcpExt ListenOverflows
	listenDrops     uint64          // Σ servers' TcpExt ListenDrops
	paws            PAWSCounters    // Σ servers' PAWS rejections at TIME_WAIT (serverPAWS)
}

func (a counters) delta(b counters) roundDelta {
	return roundDelta{
		proc:            ctstat.Delta(a.proc, b.proc).Total(),
		netlink:         ctstat.Delta(a.netlink, b.netlink).Total(),
		synRetrans:      b.synRetrans - a.synRetrans,
		listenOverflows: b.listenOverflows - a.listenOverflows,
		listenDrops:     b.listenDrops - a.listenDrops,
		paws: PAWSCounters{
			Counter:            b.paws.Counter,
			TimewaitRejected:   b.paws.TimewaitRejected - a.paws.TimewaitRejected,
			ACKSkippedTimewait: b.paws.ACKSkippedTimewait - a.paws.ACKSkippedTimewait,
			TimewaitOverflow:   b.paws.TimewaitOverflow - a.paws.TimewaitOverflow,
			ClientResets:       b.paws.ClientResets - a.paws.ClientResets,
		},
	}
}

// read takes every counter the lab accounts with.
func (t *Topology) read() (counters, error) {
	var c counters
	var err error
	if c.proc, err = ctstat.ReadProcIn(t.Node); err != nil {
		return c, fmt.Errorf("reading conntrack statistics of %s: %w", t.Node, err)
	}
	if c.netlink, err = ctstat.ReadNetlink(t.Node); err != nil {
		return c, fmt.Errorf("reading conntrack statistics of %s over ctnetlink: %w", t.Node, err)
	}
	for _, p := range t.Pods {
		ext, err := netstat.ReadIn(p.NS)
		if err != nil {
			return c, err
		}
		v, _ := ext.Get("TcpExt", "TCPSynRetrans")
		c.synRetrans += v
		// A SYN rejected at a server's TIME_WAIT is answered by an ACK the
		// client resets (tcp_rcv_synsent_state_process): short clients
		// send no other reset.
		v, _ = ext.Get("Tcp", "OutRsts")
		c.paws.ClientResets += v
	}
	for _, s := range t.Servers {
		ext, err := netstat.ReadIn(s.NS)
		if err != nil {
			return c, err
		}
		get := func(name string) uint64 { v, _ := ext.Get("TcpExt", name); return v }
		c.listenOverflows += get("ListenOverflows")
		c.listenDrops += get("ListenDrops")
		c.paws.add(serverPAWS(ext))
	}
	return c, nil
}

// serverPAWS reads a server's PAWS rejections at TIME_WAIT: TcpExt
// PAWSTimewait where the kernel has it (6.16+), else PAWSEstab, where
// tcp_timewait_state_process counted them before (it also counts
// established connections' PAWS drops, which the lab's servers do not see).
func serverPAWS(ext netstat.Counters) PAWSCounters {
	p := PAWSCounters{Counter: "PAWSTimewait"}
	v, ok := ext.Get("TcpExt", p.Counter)
	if !ok {
		p.Counter = "PAWSEstab"
		v, _ = ext.Get("TcpExt", p.Counter)
	}
	p.TimewaitRejected = v
	p.ACKSkippedTimewait, _ = ext.Get("TcpExt", "TCPACKSkippedTimeWait")
	p.TimewaitOverflow, _ = ext.Get("TcpExt", "TCPTimeWaitOverflow")
	return p
}

func val(p *float64) uint64 {
	if p == nil {
		return 0
	}
	return uint64(*p)
}

// inProc runs fn on the procfs entry of a thread inside ns: /proc/self/net
// would be the main thread's namespace.
func inProc(ns *netns.NS, fn func(procfs.Proc) error) error {
	return ns.Do(func() error {
		fs, err := procfs.NewFS("/proc")
		if err != nil {
			return err
		}
		p, err := fs.Proc(unix.Gettid())
		if err != nil {
			return err
		}
		return fn(p)
	})
}
