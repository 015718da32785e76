package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
)

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
	evSNAT           // the SYN reaches POSTROUTING: the NAT choice
	evNAT            // a queued SYN reaches its CPU: conntrack at PREROUTING
	evSYN            // a SYN leaves the pod
	evBurst          // release the next burst
	evNext           // a CPU's client thread starts its next connect()
	evArrival        // steady: the next connection starts
)

type event struct {
	at   int64 // ns
	seq  uint64
	kind uint8
	conn int32
}

// eventHeap is a binary min-heap on (at, kind, seq); seq makes ties
// deterministic.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.seq < b.seq
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// fifo is a queue of timed items whose times only grow.
type fifo[T any] struct {
	items []T
	head  int
}

func (f *fifo[T]) push(x T) { f.items = append(f.items, x) }
func (f *fifo[T]) peek() (*T, bool) {
	if f.head >= len(f.items) {
		return nil, false
	}
	return &f.items[f.head], true
}
func (f *fifo[T]) pop() {
	f.head++
	if f.head > 1024 && f.head*2 > len(f.items) {
		n := copy(f.items, f.items[f.head:])
		f.items = f.items[:n]
		f.head = 0
	}
}

type expiry struct {
	at int64
	id natmodel.ConnID
}

type release struct {
	at  int64
	key uint64
}

// connState is one connect() call.
type connState struct {
	pod, server, cpu int32
	sport            uint16
	retrans          int8
	inBurst          bool  // first SYN of a burst connection in flight
	first            int64 // first SYN, ns
	window           int64 // window of the SYN in flight
	pre              int64 // PREROUTING-to-NAT time of the SYN in flight
	ct               natmodel.ConnID
}

type destState struct {
	base, perturb uint32
}

type runner struct {
	cfg   Config
	rnd   *rand.Rand
	tb    *natmodel.Table
	nat   []*natmodel.Range // per server: masquerade uses each uplink's address
	ev    eventHeap
	seq   uint64
	busy  []int64 // per CPU: end of the window in progress
	conns []connState
	dests []destState // per pod × server (hashed chooser)
	seqP  []uint16    // per pod (sequential chooser)
	used  map[uint64]int64
	exp   fifo[expiry]
	rel   fifo[release]
	res   Result
	hist  []int
	lat   []float32
	steps [6]uint64

	started   int // connections started
	now       int64
	probes    uint64 // ports tried by NAT and pod port searches
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

// MaxProbes bounds the ports all searches of one scenario (the NAT's and the
// pods') may try, about a minute of work: scans of an exhausted range are
// O(range) per connection.
const MaxProbes = 1_000_000_000

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
	if cfg.Proto == UDP {
		return runUDP(ctx, cfg, r.nat)
	}
	tb, err := natmodel.NewTable(natmodel.Config{Era: cfg.Era, Rand: rand.New(rand.NewPCG(cfg.Seed, 0x7ab1e)), SizeHint: min(cfg.Connections, 1<<20)})
	if err != nil {
		return Result{}, err
	}
	r.tb = tb
	r.busy = make([]int64, cfg.CPUs)
	r.conns = make([]connState, 0, cfg.Connections+cfg.Pods)
	r.used = make(map[uint64]int64)
	r.hist = make([]int, cfg.SynRetries+2)
	r.lat = make([]float32, 0, cfg.Connections+cfg.Pods)
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
	if cfg.Workload == labnet.Steady {
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
	if r.cfg.Workload == labnet.Steady {
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
			if r.probes > r.maxProbes {
				return fmt.Errorf("%w: more than %d port probes after %d connections: a port range is exhausted and every search scans it (lower connections, or add servers, NAT addresses or ports)", ErrTooLong, r.maxProbes, r.started)
			}
		}
		if len(r.ev) == 0 {
			return nil // traffic is over; entries left in TIME_WAIT do not matter
		}
		// Timers that only grow (expiries, port releases) run first when due.
		next := r.ev[0].at
		if x, ok := r.exp.peek(); ok && x.at <= next {
			r.now = x.at
			r.tb.Destroy(x.id)
			r.exp.pop()
			continue
		}
		if x, ok := r.rel.peek(); ok && x.at <= next {
			if r.used[x.key] == x.at {
				delete(r.used, x.key)
			}
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
		}
	}
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
		r.conns[ci].inBurst = true
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

func usedKey(pod, server int32, port uint16) uint64 {
	return uint64(pod)<<32 | uint64(server)<<16 | uint64(port)
}

// newConn records a connect() and schedules its first SYN at t. It returns
// the connection's index, or -1 when the pod had no free port.
func (r *runner) newConn(pod, server, cpu int32, port uint16, t int64) int32 {
	r.started++
	if port == 0 {
		port = r.choosePort(pod, server, t)
	} else if r.used[usedKey(pod, server, port)] > t {
		port = 0
	}
	if port == 0 {
		r.res.NoPort++
		r.hist[len(r.hist)-1]++
		r.res.Failed++
		return -1
	}
	r.used[usedKey(pod, server, port)] = math.MaxInt64
	r.conns = append(r.conns, connState{pod: pod, server: server, cpu: cpu, sport: port, first: t})
	r.pending++
	ci := int32(len(r.conns) - 1)
	r.push(t, evSYN, ci)
	return ci
}

// choosePort picks the pod's source port towards server, or 0 if none is free.
func (r *runner) choosePort(pod, server int32, t int64) uint16 {
	c := &r.cfg
	low, high := uint32(c.PortRange[0]), uint32(c.PortRange[1])+1
	free := func(p uint32) bool {
		r.probes++
		return r.used[usedKey(pod, server, uint16(p))] <= t
	}
	switch c.Chooser {
	case UniformPorts:
		for try := 0; try < 64; try++ {
			p := low + uint32(r.rnd.IntN(int(high-low)))
			if free(p) {
				return uint16(p)
			}
		}
		return 0
	case Sequential:
		n := high - low
		for i := uint32(0); i < n; i++ {
			p := low + (uint32(r.seqP[pod])+i)%n
			if free(p) {
				r.seqP[pod] = uint16(p - low + 1)
				return uint16(p)
			}
		}
		return 0
	}
	// __inet_hash_connect (5.18+): offset from the per-destination hash and
	// perturbation, even ports first, then odd; the perturbation grows by
	// max(i, random even below 16) + 2.
	remaining := high - low
	if remaining > 1 {
		remaining &^= 1
	}
	d := &r.dests[int(pod)*c.Servers+int(server)]
	offset := (d.perturb + d.base) % remaining
	offset &^= 1
	for pass := 0; pass < 2 && remaining > 0; pass++ {
		port := low + offset
		for i := uint32(0); i < remaining; i, port = i+2, port+2 {
			if port >= high {
				port -= remaining
			}
			if free(port) {
				inc := max(i, uint32(r.rnd.IntN(8))*2)
				d.perturb += inc + 2
				return uint16(port)
			}
		}
		offset++
	}
	return 0
}

// syn sends a SYN: it queues for its CPU, which runs one packet at a time
// from conntrack creation (PREROUTING) to confirm.
func (r *runner) syn(ci int32) {
	cs := &r.conns[ci]
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

// natStep creates the SYN's unconfirmed conntrack entry (resolve_normal_ct
// at PREROUTING; a closed entry with the same tuple is killed here).
func (r *runner) natStep(ci int32) {
	cs := &r.conns[ci]
	r.tb.SetTime(durationNS(r.now))
	id, err := r.tb.NewConn(natmodel.Tuple{
		Proto: natmodel.TCP,
		Src:   netip.AddrPortFrom(labnet.PodAddr(int(cs.pod)), cs.sport),
		Dst:   netip.AddrPortFrom(labnet.ServerAddr(int(cs.server)), r.cfg.Dport),
	})
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
	cs := &r.conns[ci]
	if r.nat != nil {
		ch, err := r.tb.SNAT(cs.ct, r.nat[cs.server])
		if err == nil {
			r.steps[ch.Step]++
			r.probes += uint64(ch.Tries)
		}
	}
	r.push(r.now+cs.window, evConfirm, ci)
}

func (r *runner) confirm(ci int32) {
	cs := &r.conns[ci]
	r.burstDone(cs)
	v, err := r.tb.Confirm(cs.ct)
	if err != nil {
		// The entry was evicted or reopened under us: treat as a drop.
		v = natmodel.Dropped
	}
	switch v {
	case natmodel.Accepted, natmodel.Merged, natmodel.ClashInserted:
		r.hist[cs.retrans]++
		r.lat = append(r.lat, float32(float64(r.now-cs.first)/1e6))
		r.push(r.now+r.cfg.Lifetime.sample(r.rnd), evClose, ci)
		r.pending--
		r.roundDrained()
	default:
		r.res.Clashes++
		if int(cs.retrans) >= r.cfg.SynRetries {
			r.fail(ci)
			return
		}
		cs.retrans++
		// Retransmission k leaves (2^k - 1) RTOs after the first SYN.
		at := cs.first + ((int64(1)<<cs.retrans)-1)*int64(r.cfg.RTO)
		r.push(at, evSYN, ci)
	}
}

func (r *runner) fail(ci int32) {
	cs := &r.conns[ci]
	r.burstDone(cs)
	r.res.Failed++
	r.hist[len(r.hist)-1]++
	r.lat = append(r.lat, float32(float64(r.now-cs.first)/1e6))
	delete(r.used, usedKey(cs.pod, cs.server, cs.sport))
	r.pending--
	r.roundDrained()
}

// close ends a connection: the conntrack entry waits in TIME_WAIT, the pod's
// socket too (the client closes first).
func (r *runner) close(ci int32) {
	cs := &r.conns[ci]
	r.tb.SetState(cs.ct, natmodel.TimeWait)
	r.exp.push(expiry{r.now + int64(r.cfg.CTTimeWait), cs.ct})
	k := usedKey(cs.pod, cs.server, cs.sport)
	at := r.now + int64(r.cfg.ClientTimeWait)
	r.used[k] = at
	r.rel.push(release{at, k})
}

func (r *runner) result() Result {
	return summarize(&r.cfg, r.res, r.started, r.hist, r.steps, r.lat, r.tb.Stats(), r.now)
}
