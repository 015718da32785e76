//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/netns"
)

// wait collects the answers of sk's queries like a stub resolver: a query
// unanswered when its timeout passes is counted lost and sent again, until
// its attempts are spent. The waits of all sockets run at once, so a round
// costs one timeout per retry level, not one per lost query. It closes
// sk's socket.
func (u *udpRoundState) wait(sk *udpSock) {
	defer u.pending.wg.Done()
	f := os.NewFile(uintptr(sk.fd), "udp-client")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		u.fail(sk, err)
		return
	}
	next, open := u.nextDeadline(sk)
	if !open {
		return
	}
	u.pending.add(f, next)
	defer u.pending.remove(f)
	buf := make([]byte, 512)
	var out []byte
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		now := time.Now()
		switch {
		case err == nil && rerr == nil:
			u.answer(sk, buf[:n], now)
		case errors.Is(err, os.ErrDeadlineExceeded):
			u.expire(sk, now, &out)
		case err == nil:
			u.fail(sk, rerr)
			return
		default:
			u.fail(sk, err)
			return
		}
		if next, open = u.nextDeadline(sk); !open || !u.pending.setDeadline(f, next) {
			return
		}
	}
}

// nextDeadline is the earliest timeout of sk's open queries; open is false
// when every query is answered or has failed.
func (u *udpRoundState) nextDeadline(sk *udpSock) (next time.Time, open bool) {
	for _, i := range sk.qs {
		o := &u.outs[i]
		if o.answered || o.failed {
			continue
		}
		if !open || o.deadline.Before(next) {
			next, open = o.deadline, true
		}
	}
	return next, open
}

// answer matches an answer to its query by id and type. An answer to an
// attempt earlier than the last one sent came after that attempt's
// timeout: that transmission was late, not lost. A query is answered by
// its first answer, whichever attempt it answers.
func (u *udpRoundState) answer(sk *udpSock, msg []byte, now time.Time) {
	id, resp, qtype, err := ParseDNSQuestion(msg)
	if err != nil || !resp {
		return
	}
	const mask = 1<<attemptBits - 1
	for _, i := range sk.qs {
		q, o := &u.qs[i], &u.outs[i]
		a := int(id & mask)
		if q.id != id&^mask || q.qtype != qtype || o.seen&(1<<a) != 0 {
			continue
		}
		o.seen |= 1 << a
		if a < o.attempt {
			o.late++
		}
		if !o.answered {
			o.answered, o.failed = true, false
			o.latency = now.Sub(o.first)
		}
		return
	}
}

// expire counts every open query of sk whose timeout has passed as lost,
// and sends it again or gives it up.
func (u *udpRoundState) expire(sk *udpSock, now time.Time, buf *[]byte) {
	if u.pending.isCancelled() {
		for _, i := range sk.qs {
			u.outs[i].failed = !u.outs[i].answered
		}
		return
	}
	for _, i := range sk.qs {
		o := &u.outs[i]
		if o.answered || o.failed || now.Before(o.deadline) {
			continue
		}
		o.lost++
		if o.attempt+1 >= u.s.cfg.UDP.Attempts {
			o.failed = true
			o.latency = now.Sub(o.first)
			continue
		}
		o.attempt++
		o.deadline = now.Add(u.s.cfg.UDP.Timeout)
		u.send(sk, i, buf)
	}
}

// fail gives up sk's open queries after a socket error.
func (u *udpRoundState) fail(sk *udpSock, err error) {
	for _, i := range sk.qs {
		if o := &u.outs[i]; !o.answered {
			o.failed = true
			o.err = fmt.Errorf("waiting for the answer: %w", err)
		}
	}
}

// udpCounters is what the kernel counted at one instant for a UDP round:
// the TCP lab's counters plus the pods' and servers' Udp counters.
type udpCounters struct {
	counters
	podRcvbuf, podNoPorts, podInErrors uint64
	srvRcvbuf, srvInErrors             uint64
}

func (a udpCounters) delta(b udpCounters) udpDelta {
	return udpDelta{
		roundDelta:  a.counters.delta(b.counters),
		perCPU:      ctstat.Delta(a.proc, b.proc).CPUs,
		podRcvbuf:   b.podRcvbuf - a.podRcvbuf,
		podNoPorts:  b.podNoPorts - a.podNoPorts,
		podInErrors: b.podInErrors - a.podInErrors,
		srvRcvbuf:   b.srvRcvbuf - a.srvRcvbuf,
		srvInErrors: b.srvInErrors - a.srvInErrors,
	}
}

// readUDP takes every counter a UDP round is accounted with.
func (t *Topology) readUDP() (udpCounters, error) {
	var c udpCounters
	var err error
	if c.counters, err = t.read(); err != nil {
		return c, err
	}
	for _, p := range t.Pods {
		u, err := udpStats(p.NS)
		if err != nil {
			return c, err
		}
		c.podRcvbuf += val(u.RcvbufErrors)
		c.podNoPorts += val(u.NoPorts)
		c.podInErrors += val(u.InErrors)
	}
	for _, s := range t.Servers {
		u, err := udpStats(s.NS)
		if err != nil {
			return c, err
		}
		c.srvRcvbuf += val(u.RcvbufErrors)
		c.srvInErrors += val(u.InErrors)
	}
	return c, nil
}

// udpStats reads the Udp counters of ns (/proc/<tid>/net/snmp).
func udpStats(ns *netns.NS) (procfs.Udp, error) {
	var u procfs.Udp
	err := inProc(ns, func(p procfs.Proc) error {
		st, err := p.Snmp()
		u = st.Udp
		return err
	})
	if err != nil {
		return u, fmt.Errorf("reading Udp counters of %s: %w", ns, err)
	}
	return u, nil
}
