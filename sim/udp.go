package sim

import (
	"cmp"
	"container/heap"
	"context"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
)

// UDP is Config.Proto for resolver-like queries, the traffic of
// `snatrace lab --proto udp`.
const UDP = "udp"

// UDP defaults, the lab's.
const (
	DefaultUDPTimeout   = 5 * time.Second
	DefaultUDPAttempts  = 2
	DefaultUDPRoundSize = 4000
)

// UDPStats is what a UDP scenario adds to a Result (inline in its JSON
// form). For UDP, Result.SYNs counts datagrams (queries and retries) and
// Result.Clashes the datagrams dropped at confirm.
type UDPStats struct {
	Queries int    `json:"queries"`
	Lost    uint64 `json:"lost"`    // datagrams dropped: each costs its client a timeout
	Retried int    `json:"retried"` // queries sent again after the timeout
	// Merged and Inserted count the clashes the era resolved: the packet
	// attached to the winning entry (4.6/4.19), or the loser inserted in
	// its reply direction only (5.6).
	Merged   uint64 `json:"merged"`
	Inserted uint64 `json:"inserted"`
	// RodeEntry counts queries whose first packet found their flow's entry
	// already confirmed (the second query of a pair that came too late to
	// race): no new entry, nothing to clash.
	RodeEntry uint64 `json:"rode_entry"`
}

// udpQuery is one datagram of a burst on its way through the node.
type udpQuery struct {
	pod, server int
	cpu         int
	sport       uint16
	create      int64 // conntrack entry created (PREROUTING)
	snat        int64 // NAT choice (POSTROUTING)
	confirm     int64
	first       int64 // the query's first transmission
	attempt     int
	ct          natmodel.ConnID
	noTuple     bool // its NAT search found no free tuple
}

// udpRunner simulates the lab's UDP rounds: bursts whose queries race
// through the node on their CPUs, a conntrack flush between rounds (as the
// lab does), and the retries of lost queries after the client's timeout,
// which no longer race (their partner is answered).
type udpRunner struct {
	cfg   Config
	rnd   *rand.Rand
	tb    *natmodel.Table
	nat   []*natmodel.Range
	now   int64
	burst int
	live  []natmodel.ConnID // entries to flush at the end of the round
	res   Result
	udp   UDPStats
	hist  []int
	lat   stats.Hist
	steps [6]uint64
	retry []udpQuery
}

// runUDP simulates cfg's UDP workload (Config.Proto == UDP).
func runUDP(ctx context.Context, cfg Config, nat []*natmodel.Range) (Result, error) {
	tb, err := natmodel.NewTable(natmodel.Config{Era: cfg.Era, Rand: rand.New(rand.NewPCG(cfg.Seed, 0x7ab1e)), SizeHint: min(2*cfg.RoundSize, 1<<20)})
	if err != nil {
		return Result{}, err
	}
	r := &udpRunner{cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x5eed5eed)), tb: tb, nat: nat, hist: make([]int, cfg.UDPAttempts+1)}
	for r.udp.Queries < cfg.Connections {
		if err := ctx.Err(); err != nil {
			return Result{}, ErrCanceled
		}
		r.round(min(cfg.RoundSize, cfg.Connections-r.udp.Queries))
	}
	return r.result(), nil
}

// round sends about n queries in bursts, then the retries, then flushes.
func (r *udpRunner) round(n int) {
	start := r.now
	for sent := 0; sent < n; {
		sent += r.sendBurst(r.planBurst())
	}
	// The lost queries' clients retry one timeout after their send; a
	// retry that is lost again waits another.
	for len(r.retry) > 0 {
		qs := r.retry
		r.retry = nil
		for _, q := range qs {
			q.attempt++
			r.now = max(r.now, q.confirm+int64(r.cfg.UDPTimeout))
			q.create, q.snat, q.confirm = r.now, r.now, r.now
			r.res.SYNs++
			r.pass(&q)
		}
	}
	for _, id := range r.live {
		r.tb.Destroy(id)
	}
	r.live = r.live[:0]
	r.now = max(r.now, start) + int64(time.Millisecond)
}

// planBurst lays out one burst as the lab's planner does: one query per pod
// (same-port: the burst's port; ephemeral: a random port of each pod's
// range), or pairs (one socket per pod, an A and an AAAA query),
// round-robin over the CPUs.
func (r *udpRunner) planBurst() []udpQuery {
	c := &r.cfg
	server := r.burst % c.Servers
	var qs []udpQuery
	for pod := range c.Pods {
		port := c.BasePort + uint16(r.burst%c.PortSpan)
		if c.Workload != labnet.SamePort {
			port = c.PortRange[0] + uint16(r.rnd.IntN(int(c.PortRange[1]-c.PortRange[0])+1))
		}
		qs = append(qs, udpQuery{pod: pod, server: server, sport: port})
		if c.Workload == labnet.Pairs {
			qs = append(qs, udpQuery{pod: pod, server: server, sport: port})
		}
	}
	r.burst++
	for i := range qs {
		qs[i].cpu = i % c.CPUs
	}
	return qs
}

// sendBurst times every query of a burst on its CPU (after the CPU's skew,
// one after another, Gap apart, each holding its CPU from conntrack
// creation to confirm), runs the steps of all of them in time order, and
// returns the number of queries sent.
func (r *udpRunner) sendBurst(qs []udpQuery) int {
	c := &r.cfg
	busy := make([]int64, c.CPUs)
	for cpu := range busy {
		busy[cpu] = r.now + c.Skew.sample(r.rnd)
	}
	end := r.now
	for i := range qs {
		q := &qs[i]
		q.create = busy[q.cpu]
		q.first = q.create
		q.snat = q.create + c.PreNAT.sample(r.rnd)
		q.confirm = q.snat + c.Window.sample(r.rnd)
		busy[q.cpu] = q.confirm + c.Gap.sample(r.rnd)
		end = max(end, busy[q.cpu])
	}
	// Each query's next step is queued when its previous one has run, so
	// a query's own steps keep their order however its times tie; across
	// queries, the earliest step runs first (a confirm before a creation or
	// a NAT choice at the same instant).
	h := &stepHeap{}
	for i, q := range qs {
		heap.Push(h, udpStep{q.create, stepCreate, i})
	}
	for h.Len() > 0 {
		s := heap.Pop(h).(udpStep)
		q := &qs[s.q]
		if !r.step(q, s.kind) || s.kind == stepConfirm {
			continue
		}
		if s.kind == stepCreate {
			heap.Push(h, udpStep{q.snat, stepSNAT, s.q})
		} else {
			heap.Push(h, udpStep{q.confirm, stepConfirm, s.q})
		}
	}
	r.res.SYNs += uint64(len(qs))
	r.udp.Queries += len(qs)
	r.now = end
	return len(qs)
}

// udpStep is one step of query q of a burst, due at at.
type udpStep struct {
	at   int64
	kind int
	q    int
}

// stepHeap orders steps by time, then kind, then query.
type stepHeap []udpStep

func (h stepHeap) Len() int { return len(h) }
func (h stepHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.kind, b.kind), cmp.Compare(a.q, b.q)) < 0
}
func (h stepHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *stepHeap) Push(x any)   { *h = append(*h, x.(udpStep)) }
func (h *stepHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// The steps of a query through the node, in the order steps of one
// instant run: a CPU ends one packet before it starts the next, and a
// query's NAT choice follows its creation (PreNAT may be 0).
const (
	stepConfirm = iota
	stepCreate
	stepSNAT
)

// step runs one step of q; false ends q's steps (it rode an existing entry).
func (r *udpRunner) step(q *udpQuery, kind int) bool {
	switch kind {
	case stepCreate:
		dst := labnet.ServerAddr(q.server)
		if r.cfg.UDPService {
			dst = labnet.ServiceAddr
		}
		id, err := r.tb.NewConn(natmodel.Tuple{
			Proto: natmodel.UDP,
			Src:   netip.AddrPortFrom(labnet.PodAddr(q.pod), q.sport),
			Dst:   netip.AddrPortFrom(dst, r.cfg.Dport),
		})
		if err != nil { // its flow is confirmed already: no new entry
			r.udp.RodeEntry++
			r.answered(q, q.create)
			return false
		}
		q.ct = id
		r.live = append(r.live, id)
		if r.cfg.UDPService { // PREROUTING: the service picks a backend per new flow
			q.server = r.rnd.IntN(r.cfg.Servers)
			r.tb.DNAT(id, netip.AddrPortFrom(labnet.ServerAddr(q.server), r.cfg.Dport))
		}
	case stepSNAT:
		if r.nat != nil {
			if ch, err := r.tb.SNAT(q.ct, r.nat[q.server]); err == nil {
				r.steps[ch.Step]++
				q.noTuple = ch.Step == natmodel.StepExhausted
			}
		}
	case stepConfirm:
		r.confirmQuery(q)
	}
	return true
}

// pass runs a query that races nobody: creation, NAT and confirm at once.
func (r *udpRunner) pass(q *udpQuery) {
	for _, kind := range []int{stepCreate, stepSNAT, stepConfirm} {
		if !r.step(q, kind) {
			return
		}
	}
}

func (r *udpRunner) confirmQuery(q *udpQuery) {
	v, err := r.tb.Confirm(q.ct)
	if err != nil {
		v = natmodel.Dropped
	}
	switch v {
	case natmodel.Dropped:
		r.res.Clashes++
		if q.noTuple {
			r.res.NoTuple++
		}
		r.udp.Lost++
		if q.attempt == 0 {
			r.udp.Retried++
		}
		if q.attempt+1 < r.cfg.UDPAttempts {
			r.retry = append(r.retry, *q)
			return
		}
		r.res.Failed++
		r.hist[len(r.hist)-1]++
		r.lat.Add(float64(float32(float64(q.confirm-q.first+int64(r.cfg.UDPTimeout)) / 1e6)))
		return
	case natmodel.Merged:
		r.udp.Merged++
	case natmodel.ClashInserted:
		r.udp.Inserted++
	}
	r.answered(q, q.confirm)
}

func (r *udpRunner) answered(q *udpQuery, at int64) {
	r.hist[q.attempt]++
	r.lat.Add(float64(float32(float64(at-q.first) / 1e6)))
}

func (r *udpRunner) result() Result {
	res := summarize(&r.cfg, r.res, r.udp.Queries, r.hist, r.steps, r.lat.Latency(), r.tb.Stats(), r.now)
	udp := r.udp
	res.UDPStats = &udp
	return res
}

// udpDefaults fills the zero UDP fields (Proto == UDP) with the lab's.
func (c *Config) udpDefaults() {
	if c.UDPTimeout == 0 {
		c.UDPTimeout = DefaultUDPTimeout
	}
	if c.UDPAttempts == 0 {
		c.UDPAttempts = DefaultUDPAttempts
	}
	if c.RoundSize == 0 {
		c.RoundSize = DefaultUDPRoundSize
	}
	if c.Dport == 0 {
		c.Dport = 53
	}
}

// validateProto checks the settings that depend on the protocol.
func (c *Config) validateProto() error {
	switch c.Proto {
	case "", "tcp":
		if c.Workload == labnet.Pairs {
			return fieldErr("workload", "%s is a UDP workload (use --proto udp)", labnet.Pairs)
		}
		return nil
	case UDP:
	default:
		return fieldErr("proto", "%q is not tcp or udp", c.Proto)
	}
	switch c.Workload {
	case labnet.SamePort, labnet.Ephemeral, labnet.Pairs:
	default:
		return fieldErr("workload", "%s is not a UDP workload: want %s", c.Workload, strings.Join(labnet.UDPWorkloads, ", "))
	}
	if c.Rate != 0 {
		return fieldErr("rate", "the UDP workloads send bursts back to back")
	}
	if c.UDPTimeout <= 0 || c.UDPTimeout > time.Minute {
		return fieldErr("udp-timeout", "%v is out of range (0, 1m]", c.UDPTimeout)
	}
	if c.UDPAttempts < 1 || c.UDPAttempts > 5 {
		return fieldErr("udp-attempts", "%d is out of range 1..5", c.UDPAttempts)
	}
	return nil
}

// confirmClashes is the clashes a result's confirms found: for TCP its
// drops; for UDP every clash, resolved or not, which is what the lab's
// insert_failed + clash_resolve count in every era (before 5.10
// insert_failed counts both and clash_resolve is absent).
func (r Result) confirmClashes() uint64 {
	if r.UDPStats != nil {
		return r.Conntrack.InsertFailed + r.Conntrack.ClashResolve
	}
	return r.Clashes
}

// labClashes is the clashes a lab result counted at confirm, the measure
// calibration and prediction compare: insert_failed, plus clash_resolve
// for a UDP run (see confirmClashes).
func labClashes(rep LabReport, r LabResult) uint64 {
	if rep.Proto == UDP {
		return r.Conntrack.InsertFailed + r.Conntrack.ClashResolve
	}
	return r.Conntrack.InsertFailed
}
