package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/snatrace/snatrace/internal/hugepage"
	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
)

// verifyModel makes every run's table check the promises the runner makes
// it (natmodel.Config.Verify); the package's tests set it.
var verifyModel bool

// MasqueradeAddr is the node's address towards server k: the simulated
// network uses the lab's address plan (package labnet), so that
// address-dependent choices (the jhash of a multi-address SNAT range, the
// keyed hashes) come out as in the lab.
func MasqueradeAddr(k int) netip.Addr { return labnet.NodeAddr(k) }

// rangeOf returns the nf_nat_range2 the kernel builds for m towards server
// 0, or nil for none.
func rangeOf(m natrule.Mode) (*natmodel.Range, error) { return m.Range(MasqueradeAddr(0)) }

// natRanges returns the range of m towards each server (masquerade takes
// each uplink's address), or nil for no NAT.
func natRanges(m natrule.Mode, servers int) []*natmodel.Range {
	nat, _ := rangeOf(m)
	if nat == nil {
		return nil
	}
	out := make([]*natmodel.Range, servers)
	for k := range out {
		rk := *nat
		if m.Action == natrule.Masquerade {
			rk.MinAddr, rk.MaxAddr = MasqueradeAddr(k), MasqueradeAddr(k)
		}
		out[k] = &rk
	}
	return out
}

// Event kinds, in the order events of one instant run: a confirm at t
// comes before a NAT step at t, so that a CPU finishes one packet before it
// starts the next.
const (
	evConfirm = iota // the SYN's conntrack entry is confirmed
	evClose          // the connection closes
	evFail           // connect() gives up: ETIMEDOUT
	evSNAT           // the SYN reaches POSTROUTING: the NAT choice
	evNAT            // a queued SYN reaches its CPU: conntrack at PREROUTING
	evSYN            // a SYN leaves the pod
	evBurst          // release the next burst
	evNext           // a CPU's client thread starts its next connect()
	evArrival        // steady: the next connection starts
)

type expiry struct {
	at int64
	id natmodel.ConnID
}

type release struct {
	at          int64
	pod, server int32
	port        uint16
}

// connState is one connect() call.
type connState struct {
	pod, server, cpu int32
	sport            uint16
	retrans          uint8 // up to MaxRetransmissions: 20 + 127
	inBurst          bool  // first SYN of a burst connection in flight
	noTuple          bool  // the SYN in flight found no free NAT tuple
	first            int64 // first SYN, ns
	window           int64 // window of the SYN in flight
	pre              int64 // PREROUTING-to-NAT time of the SYN in flight
	ct               natmodel.ConnID
	dropped          bool // the last SYN's entry was dropped at confirm
	quick            bool // a PAWS rejection armed the 2 ms retry (paws.go)
}

type destState struct {
	base, perturb uint32
}

type runner struct {
	cfg   Config
	rnd   *rand.Rand
	tb    *natmodel.Table
	nat   []*natmodel.Range // per server: masquerade uses each uplink's address
	ev    eventQueue
	seq   uint64
	busy  []int64         // per CPU: end of the window in progress
	conns slab[connState] // connections in flight; slots are reused
	free  []int32         // slots of finished connections
	dests []destState     // per pod × server (hashed chooser)
	seqP  []uint16        // per pod (sequential chooser)
	ports []*portBits     // per pod × server, made on first use
	pool  portPool        // where ports come from
	// exp are the conntrack entries' timeouts: TIME_WAIT (CTTimeWait) and
	// CLOSE after a PAWS rejection (closeTimeout), one queue each, so that
	// each queue's times only grow.
	exp   [2]fifo[expiry]
	rel   fifo[release]
	res   Result
	hist  []int
	lat   stats.Hist
	steps [6]uint64
	paws  *pawsModel // short workload: the servers' TIME_WAIT (paws.go)

	started   int // connections started
	now       int64
	linear    int     // the era's tcp_syn_linear_timeouts
	synAt     []int64 // Backoff(k): when retransmission k goes, after the first SYN
	giveUpAt  int64   // tcp_model_timeout of the retries, after the first SYN
	natWork   uint64  // the NAT choices' Work: lookups and bitset words
	podWork   uint64  // the pods' port choices: tries and bitset words
	maxProbes uint64

	// rounds (Config.RoundSize): after a round's connections the traffic
	// waits until every one of them has connected or failed.
	pending   int   // connections started and not finished
	roundLeft int   // connections (steady) or bursts left in this round
	roundWait bool  // waiting for pending to reach 0
	roundNext uint8 // the event that starts the next round

	// bursts
	burst       int
	burstServer int32
	burstPort   uint16
	queue       [][]int32 // per CPU: pods of this burst
	qpos        []int     // per CPU: next index into queue
	cpusLeft    int
	burstStart  int64
}

// ErrCanceled is returned when the context ends a run early.
var ErrCanceled = errors.New("simulation canceled")

// ErrTooLong is returned when a scenario turns out to need more work than
// MaxProbes allows.
var ErrTooLong = errors.New("connections: scenario would not finish in reasonable time")

// MaxProbes bounds the port-search work of one scenario, in units of about
// a NAT lookup (a cache miss in the conntrack hash): half a minute or so.
// The pods' port choices count podWordsPerProbe bitset words a unit: a
// pod's bitset is read word after word, from the cache.
const MaxProbes = 1_000_000_000

const podWordsPerProbe = 16

// work is the scenario's port-search work so far, in MaxProbes' units.
func (r *runner) work() uint64 { return r.natWork + r.podWork/podWordsPerProbe }

// tooLong is ErrTooLong, saying whose port searches took the work.
func (r *runner) tooLong() error {
	if r.natWork >= r.podWork/podWordsPerProbe {
		return fmt.Errorf("%w: more than %d units of port-search work after %d connections: a NAT port range is exhausted and every search scans it (lower --connections or --rate, or add --servers, NAT addresses or ports to --nat)", ErrTooLong, r.maxProbes, r.started)
	}
	return fmt.Errorf("%w: more than %d units of port-search work after %d connections: the pods' local ports are exhausted and every connect() scans them (lower --connections or --rate, widen --port-range, add --pods, or shorten --client-timewait)", ErrTooLong, r.maxProbes, r.started)
}

// Run simulates cfg. It is deterministic: the same Config gives the same
// Result. ctx is checked every few thousand events.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	r := &runner{cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x5eed5eed)), maxProbes: MaxProbes}
	if cfg.MaxProbes > 0 {
		r.maxProbes = cfg.MaxProbes
	}
	r.nat = natRanges(cfg.NAT, cfg.Servers)
	r.linear = cfg.linearTimeouts()
	for k := 0; k <= cfg.SynRetries+r.linear+1; k++ {
		r.synAt = append(r.synAt, int64(Backoff(k, cfg.RTO, r.linear)))
	}
	r.giveUpAt = int64(synTimeout(cfg.SynRetries, cfg.RTO))
	if cfg.Proto == UDP {
		return runUDP(ctx, cfg, r.nat)
	}
	// Entries live at once are bounded by the connections and, for long,
	// by the tuples: 65,536 ports a destination (more than that only with
	// several NAT addresses, and then the table grows). A table sized for
	// every connection of an exhausted run would be 30 MiB of cache misses.
	// With one server every pod's source port is one flow (one server
	// address, one port).
	tb, err := natmodel.NewTable(natmodel.Config{Era: cfg.Era, Rand: rand.New(rand.NewPCG(cfg.Seed, 0x7ab1e)), SizeHint: min(cfg.Connections, cfg.Servers<<16), Verify: verifyModel,
		OneFlowPerSource: cfg.Servers == 1})
	if err != nil {
		return Result{}, err
	}
	r.tb = tb
	r.paws = newPAWS(&r.cfg, cfg.Seed^0x7a5)
	r.busy = make([]int64, cfg.CPUs)
	// An exhausted run frees a million slots at its end, when nothing
	// takes them again: grown by append, the list is copied and faulted
	// in again and again.
	r.free = make([]int32, 0, min(cfg.Connections, 1<<20))
	hugepage.Slice(r.free)
	r.ports = make([]*portBits, cfg.Pods*cfg.Servers)
	r.pool.left = len(r.ports)
	// Connections by retransmissions: up to the era's most, then failed.
	r.hist = make([]int, MaxRetransmissions(cfg.SynRetries, r.linear)+2)
	switch cfg.Chooser {
	case Hashed:
		r.dests = make([]destState, cfg.Pods*cfg.Servers)
		for i := range r.dests {
			r.dests[i] = destState{base: r.rnd.Uint32(), perturb: r.rnd.Uint32()}
		}
	case Sequential:
		r.seqP = make([]uint16, cfg.Pods)
		for i := range r.seqP {
			r.seqP[i] = uint16(r.rnd.Uint32())
		}
	}
	r.roundLeft = r.roundSize()
	if arrivals(cfg.Workload) {
		r.push(0, evArrival, -1)
	} else {
		r.push(0, evBurst, -1)
	}
	if err := r.loop(ctx); err != nil {
		return Result{}, err
	}
	return r.result(), nil
}

// roundSize is the number of arrivals (steady) or bursts in a round, or 0
// for no rounds. The lab plans a round of n connections as whole bursts.
func (r *runner) roundSize() int {
	n := r.cfg.RoundSize
	if n <= 0 {
		return 0
	}
	if arrivals(r.cfg.Workload) {
		return n
	}
	return (n + r.cfg.Pods - 1) / r.cfg.Pods
}

// endOfRound reports whether the traffic must wait for the round to drain
// before starting with event next, and arranges the restart.
func (r *runner) endOfRound(next uint8) bool {
	if r.roundSize() == 0 {
		return false
	}
	if r.roundLeft > 0 {
		r.roundLeft--
		return false
	}
	r.roundWait, r.roundNext = true, next
	r.roundDrained()
	return true
}

// roundDrained starts the next round once every connection of this one has
// finished.
func (r *runner) roundDrained() {
	if r.roundWait && r.pending == 0 {
		r.roundWait = false
		r.roundLeft = r.roundSize()
		r.push(r.now, r.roundNext, -1)
	}
}

func (r *runner) push(at int64, kind uint8, conn int32) {
	r.seq++
	r.ev.push(event{at: at, seq: r.seq, kind: kind, conn: conn})
}

func (r *runner) loop(ctx context.Context) error {
	for n := 0; ; n++ {
		if n&0xfff == 0 {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w", ErrCanceled, ctx.Err())
			}
			if r.work() > r.maxProbes {
				return r.tooLong()
			}
		}
		next, ok := r.ev.next()
		if !ok {
			return nil // traffic is over; entries left in TIME_WAIT do not matter
		}
		// Timers that only grow (expiries, port releases) run first when due.
		if q := r.dueExpiry(next); q != nil {
			x, _ := q.peek()
			r.now = x.at
			r.tb.Destroy(x.id)
			q.pop()
			continue
		}
		if x, ok := r.rel.peek(); ok && x.at <= next {
			// Nothing can take a port in TIME_WAIT: the release is current.
			r.podPorts(x.pod, x.server).clear(x.port)
			r.rel.pop()
			continue
		}
		e := r.ev.pop()
		r.now = e.at
		switch e.kind {
		case evBurst:
			r.startBurst()
		case evNext:
			r.nextInBurst(e.conn)
		case evArrival:
			r.arrival()
		case evSYN:
			r.syn(e.conn)
		case evNAT:
			r.natStep(e.conn)
		case evSNAT:
			r.snatStep(e.conn)
		case evConfirm:
			r.confirm(e.conn)
		case evClose:
			r.close(e.conn)
		case evFail:
			r.fail(e.conn)
		}
	}
}

// The expiry queues.
const (
	expTimeWait = iota
	expClose
)

// dueExpiry returns the expiry queue whose first timeout comes first and
// is due by next, or nil.
func (r *runner) dueExpiry(next int64) *fifo[expiry] {
	var due *fifo[expiry]
	at := next
	for k := range r.exp {
		if x, ok := r.exp[k].peek(); ok && x.at <= at && (due == nil || x.at < at) {
			due, at = &r.exp[k], x.at
		}
	}
	return due
}

// startBurst releases one burst: pod i goes to CPU i mod C, and each CPU's
// client thread, after its skew, connects for its pods one after another.
// connect() runs the SYN through the node inline (veth), so a thread's next
// connect starts Gap after its previous SYN was confirmed or dropped. The
// next burst starts when every thread is done (the lab's barrier).
func (r *runner) startBurst() {
	c := &r.cfg
	if r.started >= c.Connections || r.endOfRound(evBurst) {
		return
	}
	k := r.burst
	r.burst++
	r.burstStart = r.now
	r.burstServer = int32(k % c.Servers)
	r.burstPort = 0
	if c.Workload == labnet.SamePort {
		r.burstPort = c.BasePort + uint16(k%c.PortSpan)
	}
	if r.queue == nil {
		r.queue = make([][]int32, c.CPUs)
		r.qpos = make([]int, c.CPUs)
	}
	r.cpusLeft = 0
	left := c.Connections - r.started
	for cpu := 0; cpu < c.CPUs; cpu++ {
		q := r.queue[cpu][:0]
		for pod := cpu; pod < c.Pods; pod += c.CPUs {
			// pods are taken in order across CPUs: pod p is the p-th of the burst.
			if pod < left {
				q = append(q, int32(pod))
			}
		}
		r.queue[cpu] = q
		r.qpos[cpu] = 0
		if len(q) > 0 {
			r.cpusLeft++
			r.push(r.now+c.Skew.sample(r.rnd), evNext, int32(cpu))
		}
	}
}

// nextInBurst starts the next connect() of a CPU's client thread, or marks
// the thread done and releases the next burst when it is the last.
func (r *runner) nextInBurst(cpu int32) {
	q := r.queue[cpu][r.qpos[cpu]:]
	if len(q) == 0 {
		r.cpusLeft--
		if r.cpusLeft == 0 {
			next := r.now
			if r.cfg.Rate > 0 { // paced bursts: one every Pods/Rate seconds
				next = max(next, r.burstStart+int64(float64(r.cfg.Pods)/r.cfg.Rate*1e9))
			}
			r.push(next, evBurst, -1)
		}
		return
	}
	pod := q[0]
	r.qpos[cpu]++
	if ci := r.newConn(pod, r.burstServer, cpu, r.burstPort, r.now); ci >= 0 {
		r.conns.at(ci).inBurst = true
		return
	}
	r.push(r.now+r.cfg.Gap.sample(r.rnd), evNext, cpu)
}

// burstDone is called when a burst connection's first SYN is confirmed or
// dropped: its thread goes on after Gap.
func (r *runner) burstDone(cs *connState) {
	if !cs.inBurst {
		return
	}
	cs.inBurst = false
	r.push(r.now+r.cfg.Gap.sample(r.rnd), evNext, cs.cpu)
}

// arrival starts one steady connection and schedules the next.
func (r *runner) arrival() {
	c := &r.cfg
	if r.endOfRound(evArrival) {
		return
	}
	i := r.started
	pod := int32(r.rnd.IntN(c.Pods))
	r.newConn(pod, int32(i%c.Servers), int32(i%c.CPUs), 0, r.now)
	if r.started < c.Connections {
		gap := 1e9 / c.Rate
		if c.Poisson {
			gap *= r.rnd.ExpFloat64()
		}
		r.push(r.now+int64(gap), evArrival, -1)
	}
}

// podPorts returns the ports pod holds towards server.
func (r *runner) podPorts(pod, server int32) *portBits {
	i := int(pod)*r.cfg.Servers + int(server)
	if r.ports[i] == nil {
		r.ports[i] = r.pool.get()
	}
	return r.ports[i]
}

// newConn records a connect() and schedules its first SYN at t. It returns
// the connection's index, or -1 when the pod had no free port.
func (r *runner) newConn(pod, server, cpu int32, port uint16, t int64) int32 {
	r.started++
	held := r.podPorts(pod, server)
	if port == 0 {
		port = r.choosePort(held, pod, server)
	} else if held.has(port) {
		port = 0
	}
	if port == 0 {
		r.res.NoPort++
		r.hist[len(r.hist)-1]++
		r.res.Failed++
		return -1
	}
	held.set(port)
	r.prefetch(pod, server, port)
	cs := connState{pod: pod, server: server, cpu: cpu, sport: port, first: t}
	var ci int32
	if n := len(r.free); n > 0 {
		ci = r.free[n-1]
		r.free = r.free[:n-1]
		*r.conns.at(ci) = cs
	} else {
		ci = r.conns.add(cs)
	}
	r.pending++
	r.push(t, evSYN, ci)
	return ci
}

// choosePort picks the pod's source port towards server, or 0 if none is
// free. held is what the pod holds towards server.
func (r *runner) choosePort(held *portBits, pod, server int32) uint16 {
	c := &r.cfg
	low, high := uint32(c.PortRange[0]), uint32(c.PortRange[1])+1
	switch c.Chooser {
	case UniformPorts:
		for try := 0; try < 64; try++ {
			p := low + uint32(r.rnd.IntN(int(high-low)))
			r.podWork += podWordsPerProbe // a random try: a cache miss
			if !held.has(uint16(p)) {
				return uint16(p)
			}
		}
		return 0
	case Sequential:
		n := high - low
		start := uint32(r.seqP[pod]) % n
		k, ok := scanRange(held, low, start, n, n, n, 1)
		r.podWork += uint64(min(k+1, n))/64 + 1
		if !ok {
			return 0
		}
		p := low + (start+k)%n
		r.seqP[pod] = uint16(p - low + 1)
		return uint16(p)
	}
	return r.hashedPort(held, pod, server, low, high)
}

// hashedPort is __inet_hash_connect (5.18+): offset from the
// per-destination hash and perturbation, even ports first, then odd; the
// perturbation grows by max(i, random even below 16) + 2.
func (r *runner) hashedPort(held *portBits, pod, server int32, low, high uint32) uint16 {
	remaining := high - low
	if remaining > 1 {
		remaining &^= 1
	}
	d := &r.dests[int(pod)*r.cfg.Servers+int(server)]
	offset := (d.perturb + shuffled(d.base, r.now)) % remaining
	offset &^= 1
	for pass := 0; pass < 2 && remaining > 0; pass++ {
		// The kernel's loop: port = low + offset, += 2 for remaining/2
		// ports, minus remaining when it reaches high.
		k, ok := scanRange(held, low, offset, high-low, remaining, (remaining+1)/2, 2)
		r.podWork += uint64(min(k+1, (remaining+1)/2))/32 + 1
		if ok {
			i := 2 * k
			d.perturb += max(i, uint32(r.rnd.IntN(8))*2) + 2
			return uint16(wrapped(low, offset, high-low, remaining, k))
		}
		offset++
	}
	return 0
}

// scanRange returns the first free one of n ports low+pos, stepping by
// step from start and, on reaching low+span, going back by back, as the
// kernel's loops do: at most two runs of consecutive (or every other) ports.
func scanRange(held *portBits, low, start, span, back, n, step uint32) (uint32, bool) {
	first := min(n, (span-start+step-1)/step) // ports before the wrap
	if k, ok := held.firstFree(low+start, first, step); ok {
		return k, true
	}
	if k, ok := held.firstFree(low+start+step*first-back, n-first, step); ok {
		return first + k, true
	}
	return n, false
}

// wrapped is the k-th port of a hashed scan from offset (see scanRange).
func wrapped(low, offset, span, remaining, k uint32) uint32 {
	pos := offset + 2*k
	if pos >= span {
		pos -= remaining
	}
	return low + pos
}

// syn sends a SYN: it queues for its CPU, which runs one packet at a time
// from conntrack creation (PREROUTING) to confirm.
func (r *runner) syn(ci int32) {
	cs := r.conns.at(ci)
	r.res.SYNs++
	cs.window = r.cfg.Window.sample(r.rnd)
	cs.pre = r.cfg.PreNAT.sample(r.rnd)
	start := max(r.now, r.busy[cs.cpu])
	r.busy[cs.cpu] = start + cs.pre + cs.window
	if start > r.now {
		r.push(start, evNAT, ci)
		return
	}
	r.natStep(ci)
}

// tuple is the original tuple of a connection from pod's port to server.
func (r *runner) tuple(pod, server int32, port uint16) natmodel.Tuple {
	return natmodel.Tuple{
		Proto: natmodel.TCP,
		Src:   netip.AddrPortFrom(labnet.PodAddr(int(pod)), port),
		Dst:   netip.AddrPortFrom(labnet.ServerAddr(int(server)), r.cfg.Dport),
	}
}

// prefetch starts loading what the first SYN of a new connection will
// look up in the conntrack table (natmodel.Table.Prefetch): its SYN comes
// after the event queue's push and pop and the SYN's own draws, time for
// those cache misses to overlap. A million connections run 17 % faster.
func (r *runner) prefetch(pod, server int32, port uint16) {
	var nat *natmodel.Range
	if r.nat != nil {
		nat = r.nat[server]
	}
	r.tb.Prefetch(r.tuple(pod, server, port), nat)
}

// natStep creates the SYN's unconfirmed conntrack entry (resolve_normal_ct
// at PREROUTING; a closed entry with the same tuple is killed here).
func (r *runner) natStep(ci int32) {
	cs := r.conns.at(ci)
	r.tb.SetTime(durationNS(r.now))
	tp := r.tuple(cs.pod, cs.server, cs.sport)
	newConn := r.tb.NewConn
	if cs.dropped {
		// The last SYN's entry was dropped at confirm, and the pod still
		// holds its port towards this server: no entry can hold the tuple.
		newConn = r.tb.NewConnFresh
	}
	cs.dropped = false
	id, err := newConn(tp)
	if err != nil {
		// The tuple belongs to a live entry: the pod's kernel would not have
		// given this port. Count the attempt as failed.
		r.fail(ci)
		return
	}
	cs.ct = id
	if cs.pre > 0 {
		r.push(r.now+cs.pre, evSNAT, ci)
		return
	}
	r.snatStep(ci)
}

// snatStep is the NAT choice at POSTROUTING; the confirm follows after the
// race window.
func (r *runner) snatStep(ci int32) {
	cs := r.conns.at(ci)
	if r.nat != nil {
		ch, err := r.tb.SNAT(cs.ct, r.nat[cs.server])
		if err == nil {
			r.steps[ch.Step]++
			cs.noTuple = ch.Step == natmodel.StepExhausted
			r.natWork += uint64(ch.Work)
		}
	}
	r.push(r.now+cs.window, evConfirm, ci)
}

func (r *runner) confirm(ci int32) {
	cs := r.conns.at(ci)
	r.burstDone(cs)
	v, err := r.tb.Confirm(cs.ct)
	if err != nil {
		// The entry was evicted or reopened under us: treat as a drop.
		v = natmodel.Dropped
	}
	if v == natmodel.Accepted && r.pawsRejects(ci) {
		return
	}
	switch v {
	case natmodel.Accepted, natmodel.Merged, natmodel.ClashInserted:
		r.hist[cs.retrans]++
		r.latency(cs)
		r.push(r.now+r.cfg.Lifetime.sample(r.rnd), evClose, ci)
		r.pending--
		r.roundDrained()
	default:
		r.res.Clashes++
		if cs.noTuple {
			r.res.NoTuple++
		}
		at := cs.first + r.synAt[cs.retrans+1]
		if cs.quick { // after a PAWS rejection's quick retry
			at = retryAt(cs.first, r.now, int(cs.retrans)+1, true, r.cfg.RTO, r.linear)
		}
		// A SYN found lost after its retransmission was due (queued on a
		// busy CPU) is retransmitted at once: nothing runs in the past.
		at = max(at, r.now)
		if r.lastSYN(cs, at) {
			r.giveUp(ci, at)
			return
		}
		cs.retrans++
		cs.dropped = true
		r.push(at, evSYN, ci)
	}
}

// lastSYN reports whether the SYN of cs just lost was its last, judged at
// next, its timeout, as tcp_write_timeout does: the retries are spent
// (tcp_syn_retries, plus the linear timeouts' own), or the time since the
// first SYN reached tcp_model_timeout, or the client gives up first.
func (r *runner) lastSYN(cs *connState, next int64) bool {
	n, c := int(cs.retrans), &r.cfg
	switch {
	case n >= c.SynRetries+r.linear:
		return true
	case n >= 1 && next-cs.first >= r.giveUpAt:
		return true
	}
	return c.ConnectTimeout > 0 && next > cs.first+int64(c.ConnectTimeout)
}

// giveUp ends connection ci, whose last SYN was lost, when its connect()
// times out: at, when the kernel would have sent the next SYN, or the
// client's ConnectTimeout after the first if that is sooner. The pod holds
// its port until then.
func (r *runner) giveUp(ci int32, at int64) {
	cs := r.conns.at(ci)
	if t := r.cfg.ConnectTimeout; t > 0 {
		at = min(at, cs.first+int64(t))
	}
	r.push(max(at, r.now), evFail, ci)
}

func (r *runner) fail(ci int32) {
	cs := r.conns.at(ci)
	r.burstDone(cs)
	r.res.Failed++
	r.hist[len(r.hist)-1]++
	r.latency(cs)
	r.podPorts(cs.pod, cs.server).clear(cs.sport)
	r.pending--
	r.free = append(r.free, ci) // no event names ci any more
	r.roundDrained()
}

// latency records the connect() latency of cs, ending now.
func (r *runner) latency(cs *connState) {
	r.lat.Add(float64(float32(float64(r.now-cs.first) / 1e6)))
}

// expire queues entry id's expiry at at in queue k. An entry can end
// before its expiry (6.5's search evicts TIME_WAIT entries, a new SYN
// kills a closing entry of its tuple), and its record would wait for its
// timeout: when a queue holds more records than four times the live
// entries and a million, the dead ones are dropped, so that it stays
// bounded by the live entries. (Each record is looked up once, then or at
// its expiry; a live one is looked up again at most every million pushes.)
func (r *runner) expire(k int, at int64, id natmodel.ConnID) {
	q := &r.exp[k]
	q.push(expiry{at, id})
	if q.n > 4*r.tb.Len()+1<<20 {
		q.keep(func(x *expiry) bool { return r.tb.Live(x.id) })
	}
}

// close ends a connection: the conntrack entry waits in TIME_WAIT, the pod's
// socket too (the client closes first).
func (r *runner) close(ci int32) {
	cs := r.conns.at(ci)
	r.tb.SetState(cs.ct, natmodel.TimeWait)
	r.expire(expTimeWait, r.now+int64(r.cfg.CTTimeWait), cs.ct)
	at := r.now + int64(r.cfg.ClientTimeWait)
	if r.paws != nil {
		at = r.serverClosed(cs) // the server holds the TIME_WAIT
	}
	r.rel.push(release{at, cs.pod, cs.server, cs.sport})
	r.free = append(r.free, ci) // no event names ci any more
}

func (r *runner) result() Result {
	return summarize(&r.cfg, r.res, r.started, r.hist, r.steps, r.lat.Latency(), r.tb.Stats(), r.now)
}
