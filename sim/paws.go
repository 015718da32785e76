package sim

import (
	"net/netip"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/tsoffset"
)

// The short workload (labnet.Short) is the lab's: connections arrive at
// Rate, the server closes first and holds the NAT tuple (node address and
// port, server address and port) in TIME_WAIT for ServerTimeWait; the pod's
// port is free again at once. A SYN that the NAT maps onto a tuple the
// server still holds is judged as tcp_timewait_state_process does: its
// TSval (the connection's timestamp offset plus the clock in ms) is
// compared with the last one the server saw on that tuple, and a lower one
// is rejected by PAWS (the server's PAWSTimewait). The client answers the
// server's ACK with a reset, which ends the TIME_WAIT, and sends its SYN
// again: 2 ms later the first time (tcp_rcv_synsent_state_process arms
// TCP_TIMEOUT_MIN while nothing was retransmitted), then after 2 s, 4 s ...
// (the doubled RTO). The retry is a new conntrack entry (the reset closed
// the old one) and a new NAT choice.
//
// The timestamp offset is a keyed hash of the pod's address and the
// server's (TSOffsets per-address: 4.12 to 6.x without the backport), or of
// both addresses and ports (per-port: 7.0, stable 6.12.94 and 6.1.191).

// DefaultServerTimeWait is TCP_TIMEWAIT_LEN.
const DefaultServerTimeWait = 60 * time.Second

// quickRetry is TCP_TIMEOUT_MIN: the first retransmission of a SYN that
// was answered by an unacceptable ACK.
const quickRetry = int64(2 * time.Millisecond)

// arrivals reports whether a workload's connections arrive at a rate
// (steady, short) instead of in bursts.
func arrivals(workload string) bool {
	return workload == labnet.Steady || workload == labnet.Short
}

// twKey is a tuple a server holds in TIME_WAIT: the source it saw (the NAT
// address and port) and the server.
type twKey struct {
	src    netip.AddrPort
	server int32
}

type timeWait struct {
	until    int64  // ns
	tsRecent uint32 // the TSval of the client's last segment
}

// pawsModel is the servers' TIME_WAIT sockets and the kernel's timestamp
// offsets.
type pawsModel struct {
	perPort bool
	secret  uint64
	tw      map[twKey]timeWait
	swept   int64 // when expired entries were last removed
}

func newPAWS(c *Config, secret uint64) *pawsModel {
	if c.Workload != labnet.Short {
		return nil
	}
	return &pawsModel{perPort: c.TSOffsets == tsoffset.PerPort, secret: secret, tw: map[twKey]timeWait{}}
}

// tsval is the TSval a pod's connection (pod address and port to server
// k's port) sends at ns.
func (p *pawsModel) tsval(pod netip.Addr, sport uint16, server int32, dport uint16, ns int64) uint32 {
	a := pod.As4()
	h := p.secret ^ uint64(a[0])<<56 ^ uint64(a[1])<<48 ^ uint64(a[2])<<40 ^ uint64(a[3])<<32 ^ uint64(server)
	if p.perPort {
		h ^= uint64(sport)<<16 ^ uint64(dport)
	}
	return uint32(mix(h)) + uint32(ns/1e6)
}

// check judges a SYN that passed the NAT onto src towards server at now:
// true when the server's TIME_WAIT on that tuple rejects it. Either way the
// TIME_WAIT ends: the new connection takes the tuple over, or the client's
// reset kills it.
func (p *pawsModel) check(src netip.AddrPort, server int32, tsval uint32, now int64) bool {
	k := twKey{src, server}
	w, ok := p.tw[k]
	if !ok {
		return false
	}
	delete(p.tw, k)
	return w.until > now && int32(tsval-w.tsRecent) < 0
}

// closed records the server's TIME_WAIT of a connection on src that ended
// at now, and drops expired ones now and then.
func (p *pawsModel) closed(src netip.AddrPort, server int32, tsval uint32, now, hold int64) {
	p.tw[twKey{src, server}] = timeWait{until: now + hold, tsRecent: tsval}
	if now-p.swept > hold {
		for k, w := range p.tw {
			if w.until <= now {
				delete(p.tw, k)
			}
		}
		p.swept = now
	}
}

// retryAt is when a SYN rejected by PAWS is sent again: TCP_TIMEOUT_MIN
// after the first rejection of a connection that had not retransmitted,
// otherwise on the doubled RTO from there (retrans is the count including
// this retransmission).
func retryAt(first, now int64, retrans int, quick bool, rto time.Duration, linear int) int64 {
	if !quick {
		return first + int64(Backoff(retrans, rto, linear))
	}
	if retrans == 1 {
		return now + quickRetry
	}
	return first + quickRetry + int64(Backoff(retrans-1, 2*rto, 0))
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// validatePAWS checks the short workload's settings.
func (c *Config) validatePAWS() error {
	switch c.TSOffsets {
	case tsoffset.PerPort, tsoffset.PerAddress:
	default:
		return fieldErr("ts-offsets", "%q: want %s or %s", c.TSOffsets, tsoffset.PerPort, tsoffset.PerAddress)
	}
	if c.ServerTimeWait <= 0 || c.ServerTimeWait > time.Hour {
		return fieldErr("server-timewait", "%v is out of range (0, 1h]", c.ServerTimeWait)
	}
	return nil
}

// pawsRejects judges an accepted SYN of connection ci at the server
// (short workload): a rejection counts, closes the conntrack entry (the
// client's reset) and schedules the retry; it reports whether the SYN
// was rejected.
func (r *runner) pawsRejects(ci int32) bool {
	if r.paws == nil {
		return false
	}
	cs := r.conns.at(ci)
	src, ok := r.tb.SourceOf(cs.ct)
	if !ok {
		return false
	}
	ts := r.paws.tsval(labnet.PodAddr(int(cs.pod)), cs.sport, cs.server, r.cfg.Dport, r.now)
	if !r.paws.check(src, cs.server, ts, r.now) {
		return false
	}
	r.res.PAWSTimewait++
	r.tb.SetState(cs.ct, natmodel.Close)
	r.expire(expClose, r.now+int64(closeTimeout), cs.ct)
	cs.quick = cs.quick || cs.retrans == 0
	at := retryAt(cs.first, r.now, int(cs.retrans)+1, cs.quick, r.cfg.RTO, r.linear)
	if r.lastSYN(cs, at) {
		r.giveUp(ci, at)
		return true
	}
	cs.retrans++
	r.push(at, evSYN, ci)
	return true
}

// closeTimeout is conntrack's CLOSE timeout (10 s), after a reset.
const closeTimeout = 10 * time.Second

// serverClosed records the server's TIME_WAIT of a closed short
// connection and returns when the pod's port is free: now (the server
// closed first; the client holds no TIME_WAIT).
func (r *runner) serverClosed(cs *connState) int64 {
	if src, ok := r.tb.SourceOf(cs.ct); ok {
		ts := r.paws.tsval(labnet.PodAddr(int(cs.pod)), cs.sport, cs.server, r.cfg.Dport, r.now)
		r.paws.closed(src, cs.server, ts, r.now, int64(r.cfg.ServerTimeWait))
	}
	return r.now
}

// pawsRate is the share of SYNs the servers' TIME_WAIT rejected.
func (r Result) pawsRate() float64 {
	if r.SYNs == 0 {
		return 0
	}
	return float64(r.PAWSTimewait) / float64(r.SYNs)
}

// shufflePeriod is EPHEMERAL_PORT_SHUFFLE_PERIOD: secure_ipv4_port_ephemeral
// hashes jiffies / (10 * HZ) with the addresses and port (5.18 and later,
// read in the 6.1 and 6.12 sources), so a pod's port offset towards one
// destination jumps every 10 s.
const shufflePeriod = int64(10 * time.Second)

// shuffled is a destination's hash base in the shuffle period of now.
func shuffled(base uint32, now int64) uint32 {
	return uint32(mix(uint64(base) ^ uint64(now/shufflePeriod)<<32))
}
