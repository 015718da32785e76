package natmodel

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
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
