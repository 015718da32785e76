//go:build linux

package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/trace"
)

// serviceTable is the node's nftables table of the cluster-DNS service
// (Config.UDP.Service): natrule never touches it.
const serviceTable = "snatrace-svc"

// openUDP starts a resolver-like responder in every server namespace and,
// for UDP.Service, installs the service's DNAT rules on the node. The
// responders live until the returned stop is called.
func (s *Session) openUDP(ctx context.Context) (stop func(), err error) {
	if s.cfg.UDP.Service {
		if err := installService(s.Topo, s.cfg.Workload.Dport); err != nil {
			return nil, err
		}
	}
	var conns []*net.UDPConn
	var wg sync.WaitGroup
	stop = func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}
	for _, srv := range s.Topo.Servers {
		var c *net.UDPConn
		err := srv.NS.Do(func() (err error) {
			c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(srv.Addr, s.cfg.Workload.Dport)))
			return err
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("listening on udp in %s: %w", srv.NS, err)
		}
		forceRcvbuf(c, 8<<20)
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveDNS(c)
		}()
	}
	return stop, nil
}

// forceRcvbuf sets a socket's receive buffer past net.core.rmem_max (root),
// so that a burst of queries is never dropped by the responder's socket.
func forceRcvbuf(c *net.UDPConn, n int) {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) })
	}
}

// serveDNS answers every query that arrives on c until c is closed.
func serveDNS(c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if answerQuery(buf[:n]) {
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}
}

// installService adds the node's cluster-DNS service: in table ip
// snatrace-svc, a nat chain at prerouting (priority dstnat) that DNATs
// udp to labnet.ServiceAddr:port to one server, chosen at random per new
// flow with kube-proxy's cascade (rule i matches with probability
// 1/(K-i)):
//
//	ip daddr 10.96.0.10 udp dport 53 numgen random mod K-i 0 dnat to SERVER_i:53
func installService(t *Topology, port uint16) error {
	c, err := nftables.New(nftables.WithNetNSFd(t.Node.Fd()))
	if err != nil {
		return fmt.Errorf("opening nftables in %s: %w", t.Node, err)
	}
	tab := c.AddTable(&nftables.Table{Name: serviceTable, Family: nftables.TableFamilyIPv4})
	ch := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: tab, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	vip := labnet.ServiceAddr.As4()
	k := len(t.Servers)
	for i, srv := range t.Servers {
		e := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip[:]},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
		}
		if i < k-1 {
			e = append(e, &expr.Numgen{Register: 1, Modulus: uint32(k - i), Type: unix.NFT_NG_RANDOM},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 0)})
		}
		a := srv.Addr.As4()
		e = append(e,
			&expr.Immediate{Register: 1, Data: a[:]},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
		c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: e})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the cluster-DNS service (table ip %s) in %s: %w", serviceTable, t.Node, err)
	}
	return nil
}

// flushConntrack empties the node's conntrack table between UDP rounds: a
// query's entry lives 30 s, and a later query on the same tuple would ride
// on it instead of racing through NAT again. The ctnetlink socket is
// opened in the node namespace (never the host's).
func flushConntrack(t *Topology) error {
	c, err := conntrack.Dial(&mdnetlink.Config{NetNS: t.Node.Fd()})
	if err != nil {
		return fmt.Errorf("opening ctnetlink in %s: %w", t.Node, err)
	}
	defer c.Close()
	if err := c.Flush(); err != nil {
		return fmt.Errorf("flushing conntrack in %s: %w", t.Node, err)
	}
	return nil
}

// udpRound runs one UDP round into r: it empties the node's conntrack
// table, sends about n queries, waits for every answer (retrying after
// the client's timeout), and accounts them with the kernel's counters.
func (s *Session) udpRound(ctx context.Context, r *Result, n int, until uint64) (hit bool, err error) {
	before, err := s.emptyTable()
	if err != nil {
		return false, err
	}
	u, err := s.newUDPRound(s.plan.nextUDP(n))
	if err != nil {
		return false, err
	}
	mark := 0
	if s.trace != nil {
		mark = s.trace.mark()
	}
	outs, err := u.run(ctx, s.untilStop(before.counters, until))
	if err != nil {
		return false, err
	}
	if ctx.Err() != nil {
		return false, &CutError{Sent: len(outs)}
	}
	after, err := s.Topo.readUDP()
	if err != nil {
		return false, err
	}
	d := before.delta(after)
	r.addUDP(outs, d)
	if s.trace != nil {
		if r.Trace == nil {
			r.Trace = &TraceResult{}
		}
		r.Trace.add(s.matchUDPTrace(outs, s.trace.since(mark, 0)))
	}
	return until > 0 && d.proc.InsertFailed >= until, nil
}

// emptyTable flushes the node's conntrack table and reads the counters
// once it is empty: entries left over from earlier rounds would take part
// in this one's NAT choices (their ports are taken). A straggler (an answer
// later than its client's timeout, arriving after the flush) can make a new
// entry: the flush is tried again a few times before the round gives up.
func (s *Session) emptyTable() (udpCounters, error) {
	for try := 0; ; try++ {
		if err := flushConntrack(s.Topo); err != nil {
			return udpCounters{}, err
		}
		c, err := s.Topo.readUDP()
		if err != nil || c.proc.Entries == 0 {
			return c, err
		}
		if try == 4 {
			return c, fmt.Errorf("flushing conntrack in %s left %d entries", s.Topo.Node, c.proc.Entries)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// udpSock is one client socket of a round and the queries it sends.
type udpSock struct {
	fd     int
	qs     []int        // its queries, indexes into the round's
	unsent atomic.Int32 // the thread sending its last query starts its wait
}

// udpRoundState is a UDP round in flight.
type udpRoundState struct {
	s       *Session
	qs      []query
	outs    []udpOutcome
	socks   []*udpSock
	dsts    []unix.SockaddrInet4 // per server, or the service address for all
	shares  [][][]int
	barrier *spinBarrier
	pending *waiters
	errc    chan error
}

// newUDPRound opens the sockets of the planned bursts, one per query
// socket, in their pods' namespaces.
func (s *Session) newUDPRound(bursts [][]query) (*udpRoundState, error) {
	u := &udpRoundState{s: s, pending: &waiters{files: map[*os.File]bool{}}, errc: make(chan error, 2*len(s.d.cpus))}
	var ts [][]target
	for _, b := range bursts {
		var bt []target
		for _, q := range b {
			u.qs = append(u.qs, q)
			bt = append(bt, q.target)
		}
		ts = append(ts, bt)
	}
	u.shares = shareBursts(ts, len(s.d.cpus))
	u.outs = make([]udpOutcome, len(u.qs))
	var socketTargets []target
	for i, q := range u.qs {
		u.outs[i] = udpOutcome{pod: q.pod, server: q.server, qtype: q.qtype}
		if q.sock == len(u.socks) {
			u.socks = append(u.socks, &udpSock{fd: -1})
			socketTargets = append(socketTargets, q.target)
		}
		sk := u.socks[q.sock]
		sk.qs = append(sk.qs, i)
		sk.unsent.Add(1)
	}
	fds, err := s.d.openSocketsOf(socketTargets, unix.SOCK_DGRAM)
	if err != nil {
		return nil, err
	}
	for i, fd := range fds {
		u.socks[i].fd = fd
		var port uint16
		if sa, err := unix.Getsockname(fd); err == nil {
			if in4, ok := sa.(*unix.SockaddrInet4); ok {
				port = uint16(in4.Port)
			}
		}
		for _, q := range u.socks[i].qs {
			u.outs[q].localPort = port
		}
	}
	for _, srv := range s.Topo.Servers {
		a := srv.Addr
		if s.cfg.UDP.Service {
			a = labnet.ServiceAddr
		}
		u.dsts = append(u.dsts, unix.SockaddrInet4{Port: int(s.cfg.Workload.Dport), Addr: a.As4()})
	}
	return u, nil
}

// run sends the round's bursts from the pinned client threads and waits
// for every socket's answers. stop, polled between bursts, ends the round
// early; queries never sent are left out.
func (u *udpRoundState) run(ctx context.Context, stop func() bool) ([]udpOutcome, error) {
	defer context.AfterFunc(ctx, u.pending.cancel)()
	cpus := u.s.d.cpus
	u.barrier = &spinBarrier{n: int32(len(cpus)), stop: func() bool { return ctx.Err() != nil || stop() }}
	var workers sync.WaitGroup
	for w := range cpus {
		workers.Add(1)
		go func() {
			defer workers.Done()
			u.worker(w)
		}()
	}
	workers.Wait()
	close(u.errc)
	u.pending.wg.Wait()
	for _, sk := range u.socks {
		if sk.unsent.Load() > 0 && sk.fd >= 0 {
			unix.Close(sk.fd) // not every query sent: the round stopped early
		}
	}
	if err := <-u.errc; err != nil {
		return nil, err
	}
	var out []udpOutcome
	for _, o := range u.outs {
		if o.sent {
			out = append(out, o)
		}
	}
	return out, nil
}

// worker is client thread w: pinned to its CPU, it sends its share of each
// burst when the barrier releases it.
func (u *udpRoundState) worker(w int) {
	defer func() {
		if p := recover(); p != nil {
			u.errc <- fmt.Errorf("client thread on CPU %d: panic: %v", u.s.d.cpus[w], p)
		}
	}()
	if err := pinThread(u.s.d.cpus[w]); err != nil {
		u.errc <- err
	}
	buf := make([]byte, 0, 64)
	for _, idx := range u.shares[w] {
		if u.barrier.wait() {
			return
		}
		for _, i := range idx {
			sk := u.socks[u.qs[i].sock]
			o := &u.outs[i]
			o.first = time.Now()
			o.deadline = o.first.Add(u.s.cfg.UDP.Timeout)
			o.sent = true
			u.send(sk, i, &buf)
			if sk.unsent.Add(-1) == 0 {
				u.pending.wg.Add(1)
				go u.wait(sk)
			}
		}
	}
}

// send transmits query i's current attempt on sk.
func (u *udpRoundState) send(sk *udpSock, i int, buf *[]byte) {
	q, o := &u.qs[i], &u.outs[i]
	*buf = appendQuery((*buf)[:0], q.id|uint16(o.attempt), q.qtype)
	if err := unix.Sendto(sk.fd, *buf, 0, &u.dsts[q.server]); err != nil {
		o.err = fmt.Errorf("sending query: %w", err)
		o.failed = true
	}
}

// matchUDPTrace pairs one round's tracer events with its lost queries by
// original tuple (pod ip:port -> resolver or service:53) and time: a drop
// comes at most a few ms after the query's first send, or a timeout or
// more later for a retry.
func (s *Session) matchUDPTrace(outs []udpOutcome, events []trace.Event) TraceResult {
	var delayed []trace.Delayed
	for _, o := range outs {
		if o.lost == 0 {
			continue
		}
		dst := s.Topo.Servers[o.server].Addr
		if s.cfg.UDP.Service {
			dst = labnet.ServiceAddr
		}
		delayed = append(delayed, trace.Delayed{
			Orig:  trace.Tuple{Src: netip.AddrPortFrom(s.Topo.Pods[o.pod].Addr, o.localPort), Dst: netip.AddrPortFrom(dst, s.cfg.Workload.Dport)},
			Start: o.first,
		})
	}
	return traceResult(s.trace.t.Mode(), delayed, events, time.Duration(s.cfg.UDP.Attempts)*s.cfg.UDP.Timeout)
}
