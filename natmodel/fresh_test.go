package natmodel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// freshRun fills a 64-port masquerade range towards dst1 on a table with a
// real random stream, sends one SYN that finds no free port (dropped at
// confirm), frees free of the ports, and sends its retransmission —
// through NewConnFresh when fresh is set. It returns what the
// retransmission got.
func freshRun(t *testing.T, era Era, fresh, verify bool, free int) (Choice, Verdict, Stats) {
	t.Helper()
	tb, err := NewTable(Config{Era: era, Rand: rand.New(rand.NewPCG(7, 9)), Verify: verify})
	if err != nil {
		t.Fatal(err)
	}
	r := masq(ProtoSpecified, 1024, 1087)
	var held []ConnID
	for i := range 64 {
		id, _ := connect(t, tb, TCP, pod(i+1, 40000), dst1, r)
		if v := confirm(t, tb, id); v != Accepted {
			t.Fatalf("filling: connection %d %v", i, v)
		}
		held = append(held, id)
	}
	late := Tuple{TCP, pod(500, 41000), dst1}
	first, ch := connect(t, tb, TCP, late.Src, late.Dst, r)
	if v := confirm(t, tb, first); v != Dropped || ch.Step != StepExhausted {
		t.Fatalf("first SYN: %v %v, want dropped after an exhausted search", v, ch.Step)
	}
	for _, id := range held[:free] {
		tb.Destroy(id)
	}
	newConn := tb.NewConn
	if fresh {
		newConn = tb.NewConnFresh
	}
	id, err := newConn(late)
	if err != nil {
		t.Fatal(err)
	}
	ch, err = tb.SNAT(id, r)
	if err != nil {
		t.Fatal(err)
	}
	return ch, confirm(t, tb, id), tb.Stats()
}

// A retransmission created with NewConnFresh gets exactly what NewConn
// would give it — the same port, step, tries, verdict and counters — on a
// full range and on one with ports free again, in every search era; and
// Verify's own lookups change nothing either.
func TestNewConnFreshChangesNothing(t *testing.T) {
	for _, era := range []Era{{4, 19}, Era50, Era65, {6, 18}} {
		for _, free := range []int{0, 1, 5} {
			ch, v, st := freshRun(t, era, false, false, free)
			for _, verify := range []bool{false, true} {
				fch, fv, fst := freshRun(t, era, true, verify, free)
				if fch != ch || fv != v || fst != st {
					t.Errorf("era %v, %d freed, verify %v: fresh %+v %v %+v, NewConn %+v %v %+v",
						era, free, verify, fch, fv, fst, ch, v, st)
				}
			}
			if want := free > 0; (v == Accepted) != want {
				t.Errorf("era %v, %d freed: retransmission %v", era, free, v)
			}
		}
	}
}

// With Config.Verify, a NewConnFresh whose tuple an entry holds panics
// naming the promise, instead of creating a second entry for one tuple.
func TestNewConnFreshVerify(t *testing.T) {
	tb, err := NewTable(Config{Era: Era50, Rand: rand.New(rand.NewPCG(1, 2)), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	occupy(t, tb, 1, 40000, dst1, masq(ProtoSpecified, 40000, 40000))
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "NewConnFresh: tuple") || !strings.Contains(msg, "is held by entry") {
			t.Errorf("panic %q, want the broken promise named", msg)
		}
	}()
	tb.NewConnFresh(Tuple{TCP, netip.AddrPortFrom(pod(1, 40000).Addr(), 40000), dst1})
	t.Error("NewConnFresh on a held tuple returned")
}

// oneFlowRun drives a table through a node's life with one destination:
// 40 pods connect over and over from a few source ports each to dst1
// through a 32-port masquerade range (so that searches run and exhaust),
// connections close into TIME_WAIT, ports are reused (NewConn kills the
// closing entry) and entries expire. It returns every outcome in order
// and the counters.
func oneFlowRun(t *testing.T, era Era, oneFlow, verify bool) (string, Stats) {
	t.Helper()
	tb, err := NewTable(Config{Era: era, Rand: rand.New(rand.NewPCG(3, 4)), OneFlowPerSource: oneFlow, Verify: verify})
	if err != nil {
		t.Fatal(err)
	}
	r := masq(ProtoSpecified, 2000, 2031)
	rnd := rand.New(rand.NewPCG(5, 6))
	var b strings.Builder
	var open, closing []ConnID
	for i := range 3000 {
		tb.SetTime(time.Duration(i) * time.Millisecond)
		src := pod(rnd.IntN(40)+1, 40000+uint16(rnd.IntN(4)))
		id, err := tb.NewConn(Tuple{TCP, src, dst1})
		if err != nil {
			fmt.Fprintf(&b, "%d exists\n", i)
			continue
		}
		ch, err := tb.SNAT(id, r)
		if err != nil {
			t.Fatal(err)
		}
		v := confirm(t, tb, id)
		fmt.Fprintf(&b, "%d %v %v %d %v\n", i, ch.Source, ch.Step, ch.Tries, v)
		if v == Accepted {
			open = append(open, id)
		}
		if k := rnd.IntN(8 * len(open)); k < len(open) && k < 4 { // now and then one of the first closes
			tb.SetState(open[k], TimeWait)
			closing = append(closing, open[k])
			open = append(open[:k], open[k+1:]...)
		}
		if len(closing) > 8 { // the oldest TIME_WAIT expires
			tb.Destroy(closing[0])
			closing = closing[1:]
		}
	}
	return b.String(), tb.Stats()
}

// With Config.OneFlowPerSource the table keeps no bysource hash, and
// nothing changes: every choice, verdict and counter of a node with one
// destination is as without the promise, with Verify's checks too.
func TestOneFlowPerSourceChangesNothing(t *testing.T) {
	for _, era := range []Era{{4, 19}, Era50, Era65, {6, 18}} {
		want, wst := oneFlowRun(t, era, false, false)
		if !strings.Contains(want, "exhausted") || !strings.Contains(want, "search") {
			t.Fatalf("era %v: the run neither searched nor exhausted a range:\n%.2000s", era, want)
		}
		for _, verify := range []bool{false, true} {
			if got, st := oneFlowRun(t, era, true, verify); got != want || st != wst {
				t.Errorf("era %v, verify %v: outcomes or counters differ (%+v, want %+v)", era, verify, st, wst)
			}
		}
	}
}

// With Config.Verify, a second flow from a source the promise covers
// panics naming the promise.
func TestOneFlowPerSourceVerify(t *testing.T) {
	tb, err := NewTable(Config{Era: Era50, Rand: rand.New(rand.NewPCG(1, 2)), OneFlowPerSource: true, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	r := masq(ProtoSpecified, 2000, 2031)
	occupy(t, tb, 1, 2000, dst1, r)
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "OneFlowPerSource: source 10.0.0.1:2000 has entry") {
			t.Errorf("panic %q, want the broken promise named", msg)
		}
	}()
	connect(t, tb, TCP, pod(1, 2000), dst2, r)
	t.Error("a second flow from one source passed the promise")
}
