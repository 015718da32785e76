package natmodel

import (
	"math/rand/v2"
	"testing"
)

// Prefetch changes nothing: two tables fed the same flows and draws, one
// prefetched before every connection, make the same choices, verdicts and
// counters, on a busy table (many flows per source, closing entries that
// 6.5 evicts, the bysource path) and with a nil range or a bad tuple.
func TestPrefetchChangesNothing(t *testing.T) {
	for _, era := range []Era{Era50, Era65} {
		for _, flags := range []Flags{0, ProtoRandomFully} {
			plain, fetched := newPair(t, era)
			r := masq(flags, 1024, 1535) // 512 ports: searches run long
			flows := rand.New(rand.NewPCG(7, 8))
			var live []ConnID
			for i := 0; i < 20000; i++ {
				tp := Tuple{Proto: TCP, Src: pod(flows.IntN(40), uint16(1024+flows.IntN(3000))), Dst: dst1}
				if flows.IntN(2) == 0 {
					tp.Dst = dst2
				}
				fetched.Prefetch(tp, r)
				fetched.Prefetch(tp, nil)
				fetched.Prefetch(Tuple{}, r)
				a, errA := stepFlow(plain, tp, r)
				b, errB := stepFlow(fetched, tp, r)
				if a != b || (errA == nil) != (errB == nil) {
					t.Fatalf("%v %v flow %d: %+v (%v) without a prefetch, %+v (%v) with", era, flags, i, a, errA, b, errB)
				}
				if errA == nil && a.v == Accepted {
					live = append(live, a.id)
				}
				if len(live) > 400 { // close the oldest: TIME_WAIT, then gone
					plain.SetState(live[0], TimeWait)
					fetched.SetState(live[0], TimeWait)
					if flows.IntN(2) == 0 {
						plain.Destroy(live[0])
						fetched.Destroy(live[0])
					}
					live = live[1:]
				}
			}
			if plain.Stats() != fetched.Stats() || plain.Stats().Found == 0 {
				t.Errorf("%v %v: stats %+v without a prefetch, %+v with", era, flags, plain.Stats(), fetched.Stats())
			}
		}
	}
}

// newPair returns two tables of era with the same seed, sized to be
// prefetched (prefetchSlots).
func newPair(t *testing.T, era Era) (*Table, *Table) {
	t.Helper()
	var tbs [2]*Table
	for i := range tbs {
		tb, err := NewTable(Config{Era: era, Rand: rand.New(rand.NewPCG(1, 2)), SizeHint: prefetchSlots})
		if err != nil {
			t.Fatal(err)
		}
		tbs[i] = tb
	}
	if n := len(tbs[1].hashes[0].slots); n < prefetchSlots {
		t.Fatalf("a table of %d slots is not prefetched", n)
	}
	return tbs[0], tbs[1]
}

// flowStep is what one flow's NewConn, SNAT and Confirm gave.
type flowStep struct {
	id ConnID
	ch Choice
	v  Verdict
}

func stepFlow(tb *Table, tp Tuple, r *Range) (flowStep, error) {
	id, err := tb.NewConn(tp)
	if err != nil {
		return flowStep{}, err
	}
	ch, err := tb.SNAT(id, r)
	if err != nil {
		return flowStep{}, err
	}
	v, err := tb.Confirm(id)
	return flowStep{id, ch, v}, err
}
