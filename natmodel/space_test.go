package natmodel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestIndexChangesNothing drives two tables through the same random
// workload — pods connecting to one server through a NAT range small enough
// to fill, racing confirms, closes, timeouts — one table answering full
// port spaces from its index (space.go), the other (OnTry set) walking the
// hash as the kernel does. Every choice, verdict and counter must be the
// same: the index is a cache, not a model.
func TestIndexChangesNothing(t *testing.T) {
	for _, era := range []Era{{4, 19}, Era50, {5, 10}, Era65} {
		for _, c := range []struct {
			name   string
			flags  Flags
			lo, hi uint16
			conns  int
		}{
			{"masquerade to :20000-20299", 0, 20000, 20299, 3000},
			{"masquerade fully-random to :20000-20299", ProtoRandomFully, 20000, 20299, 3000},
			{"masquerade", 0, 0, 0, 70000},
		} {
			t.Run(fmt.Sprintf("%s/%s", era, c.name), func(t *testing.T) {
				r := Masquerade(natIP, c.flags, c.lo, c.hi)
				a, b := workload(t, era, &r, c.conns, nil), workload(t, era, &r, c.conns, func(uint16, bool) {})
				if a.log != b.log || a.stats != b.stats {
					t.Fatalf("indexed and walked tables differ:\nindexed: %v\nwalked:  %v\n(first difference at %d)", a.stats, b.stats, firstDiff(a.log, b.log))
				}
				if a.indexed == 0 {
					t.Errorf("no space was indexed: the workload never filled the range")
				}
				t.Logf("%d choices, %d exhausted, stats %+v, %d spaces indexed", c.conns, a.exhausted, a.stats, a.indexed)
			})
		}
	}
}

type workloadResult struct {
	log       string
	stats     Stats
	indexed   int
	exhausted int
}

// workload runs n connections from 8 pods to one server through r: each
// SYN is NATed, and confirmed either at once or after the next SYN's NAT
// (a race); half the confirmed connections stay open, the others close into
// TIME_WAIT, and now and then a closed one times out.
func workload(t *testing.T, era Era, r *Range, n int, onTry func(uint16, bool)) workloadResult {
	t.Helper()
	tb, err := NewTable(Config{Era: era, Rand: rand.New(rand.NewPCG(1, 2)), OnTry: onTry})
	if err != nil {
		t.Fatal(err)
	}
	drive := rand.New(rand.NewPCG(3, 4))
	var (
		res     workloadResult
		log     []byte
		pending []ConnID
		closed  []ConnID
	)
	server := netip.MustParseAddrPort("198.51.100.1:80")
	for i := 0; i < n; i++ {
		tb.SetTime(time.Duration(i) * time.Microsecond)
		src := pod(drive.IntN(8), uint16(32768+drive.IntN(28000)))
		id, err := tb.NewConn(Tuple{Proto: TCP, Src: src, Dst: server})
		if err != nil {
			continue // the pod's port is held by a live entry
		}
		ch, err := tb.SNAT(id, r)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Step == StepExhausted {
			res.exhausted++
		}
		log = fmt.Appendf(log, "%v %v %d %d %d %v;", ch.Source, ch.Step, ch.Tries, ch.Rounds, ch.Evicted, ch.Taken)
		pending = append(pending, id)
		if drive.IntN(20) == 0 {
			log = sameFlow(t, tb, src, server, r, log)
		}
		if drive.IntN(2) == 0 || len(pending) > 1 {
			for _, p := range pending {
				v, err := tb.Confirm(p)
				if err != nil {
					log = fmt.Appendf(log, "gone;")
					continue
				}
				log = fmt.Appendf(log, "%v;", v)
				switch {
				case v != Accepted:
				case drive.IntN(2) == 0: // stays open: 6.5 cannot evict it
					tb.SetState(p, Established)
				default:
					tb.SetState(p, TimeWait)
					closed = append(closed, p)
				}
			}
			pending = pending[:0]
		}
		if len(closed) > 0 && drive.IntN(10) == 0 {
			k := drive.IntN(len(closed))
			tb.Destroy(closed[k])
			closed[k] = closed[len(closed)-1]
			closed = closed[:len(closed)-1]
		}
	}
	res.log, res.stats, res.indexed = string(log), tb.Stats(), len(tb.spaces)
	return res
}

// sameFlow sends two SYNs of one flow, as a retransmission racing the
// first can: both are NATed, the first confirmed before the second's search,
// which must not count the first's port as taken (5.0+).
func sameFlow(t *testing.T, tb *Table, src, server netip.AddrPort, r *Range, log []byte) []byte {
	src = netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), src.Port())
	first, err1 := tb.NewConn(Tuple{Proto: TCP, Src: src, Dst: server})
	second, err2 := tb.NewConn(Tuple{Proto: TCP, Src: src, Dst: server})
	if err1 != nil || err2 != nil {
		return fmt.Appendf(log, "no flow;")
	}
	for _, id := range []ConnID{first, second} {
		ch, err := tb.SNAT(id, r)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tb.Confirm(id)
		log = fmt.Appendf(log, "flow %v %v %d %v %v;", ch.Source, ch.Step, ch.Tries, v, err)
	}
	return log
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// allTaken answers for any range, word edges and the top port included,
// and its count follows every change of the set, also after another range
// was asked about.
func TestAllTaken(t *testing.T) {
	for _, r := range [][2]uint32{{1024, 64512}, {1000, 1}, {1000, 100}, {65472, 64}, {65535, 1}, {0, 65536}, {4097, 63}} {
		min, size := r[0], r[1]
		var s portSet
		for p := min; p < min+size; p++ {
			if s.allTaken(min, size) {
				t.Fatalf("[%d,+%d): all taken with %d of them", min, size, p-min)
			}
			s.set(uint16(p))
		}
		if !s.allTaken(min, size) {
			t.Fatalf("[%d,+%d): not all taken when every port is", min, size)
		}
		mid := uint16(min + size/2)
		s.clear(mid)
		if s.allTaken(min, size) {
			t.Errorf("[%d,+%d): all taken after port %d was freed", min, size, mid)
		}
		s.set(mid)
		if min > 0 {
			s.clear(uint16(min - 1)) // outside the range: no matter
		}
		if !s.allTaken(min, size) {
			t.Errorf("[%d,+%d): not all taken after port %d came back", min, size, mid)
		}
		// Asked about another range, then changed, then asked again.
		if min+size < 65536 && s.allTaken(min, size+1) {
			t.Errorf("[%d,+%d): all taken with port %d free", min, size+1, min+size)
		}
		s.clear(mid)
		if s.allTaken(min, size) {
			t.Errorf("[%d,+%d): all taken after port %d was freed while another range was watched", min, size, mid)
		}
	}
}

// firstFree, which passes runs of full words through the set's summary,
// answers as a port-by-port scan does, for sets full in long runs with a
// few holes, as ports are taken and freed.
func TestFirstFreeSkipsFullWords(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	naive := func(s *portSet, p, n uint32, fp flowPorts) (uint32, bool) {
		for i := uint32(0); i < n; i++ {
			q := p + i
			if !s.has(uint16(q)) || int32(q) == fp[0] || int32(q) == fp[1] {
				return i, true
			}
		}
		return 0, false
	}
	var s portSet
	for round := 0; round < 200; round++ {
		// Fill a long run, then free a few ports anywhere.
		lo := rnd.Uint32N(65536)
		for p, end := lo, min(lo+rnd.Uint32N(20000), 65536); p < end; p++ {
			s.set(uint16(p))
		}
		for range rnd.IntN(4) {
			s.clear(uint16(rnd.Uint32N(65536)))
		}
		for range 50 {
			p := rnd.Uint32N(65536)
			n := 1 + rnd.Uint32N(65536-p)
			fp := noFlowPorts
			if rnd.IntN(4) == 0 {
				fp[0] = int32(p + rnd.Uint32N(n))
			}
			gi, gok := s.firstFree(p, n, fp)
			wi, wok := naive(&s, p, n, fp)
			if gi != wi || gok != wok {
				t.Fatalf("round %d: firstFree(%d, %d, %v) = %d, %v; a scan port by port finds %d, %v", round, p, n, fp, gi, gok, wi, wok)
			}
		}
	}
}
