package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestEventQueueOrder pushes events at random times — within a slot, a few
// slots on, beyond the ring — interleaved with pops that move the clock,
// and checks that they come out in (at, kind, seq) order, as one heap
// gives them.
func TestEventQueueOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	var q eventQueue
	var ref eventHeap
	now, seq := int64(0), uint64(0)
	popped := 0
	for step := 0; step < 200000; step++ {
		if rnd.IntN(3) > 0 {
			var d int64
			switch rnd.IntN(4) {
			case 0:
				d = rnd.Int64N(1000) // same slot, often the same ns
			case 1:
				d = rnd.Int64N(10 << bucketShift)
			case 2:
				d = rnd.Int64N(2 * ringSpan) // up to twice the ring
			default:
				d = 0
			}
			seq++
			e := event{at: now + d, seq: seq, kind: uint8(rnd.IntN(8)), conn: int32(step)}
			q.push(e)
			ref.push(e)
			continue
		}
		at, ok := q.next()
		if ok != (len(ref) > 0) {
			t.Fatalf("step %d: next ok %v with %d events", step, ok, len(ref))
		}
		if !ok {
			continue
		}
		got, want := q.pop(), ref.pop()
		if got != want || at != want.at {
			t.Fatalf("pop %d: got %+v (next said %d), want %+v", popped, got, at, want)
		}
		now = got.at
		popped++
	}
	for len(ref) > 0 {
		if _, ok := q.next(); !ok {
			t.Fatalf("queue empty with %d events left", len(ref))
		}
		if got, want := q.pop(), ref.pop(); got != want {
			t.Fatalf("drain: got %+v, want %+v", got, want)
		}
	}
	if _, ok := q.next(); ok {
		t.Fatal("queue not empty after every event was popped")
	}
}

// TestFifo pushes and pops across block boundaries: first in, first out.
func TestFifo(t *testing.T) {
	var f fifo[int]
	next, want := 0, 0
	rnd := rand.New(rand.NewPCG(9, 10))
	// Grow to ~80,000 queued (blocks of 4,096 up to 65,536), drain, and
	// grow again on the spare blocks of mixed sizes.
	for step := 0; step < 1_000_000; step++ {
		push := rnd.IntN(5) < 3
		if step >= 400_000 && step < 600_000 {
			push = rnd.IntN(5) < 1
		}
		if push {
			f.push(next)
			next++
			continue
		}
		x, ok := f.peek()
		if ok != (want < next) {
			t.Fatalf("step %d: peek ok %v with %d queued", step, ok, next-want)
		}
		if ok {
			if *x != want {
				t.Fatalf("step %d: peek %d, want %d", step, *x, want)
			}
			f.pop()
			want++
		}
	}
	if f.grown < 5 {
		t.Errorf("%d blocks made: the test did not reach the largest block", f.grown)
	}
	// A queue that has made many blocks (3 million items at once) keeps
	// making the largest; the shift must not overflow.
	g := fifo[int]{grown: 63}
	g.push(1)
	if c := cap(g.blocks[0]); c != fifoBlock<<fifoMaxGrowth {
		t.Errorf("block of %d items after 63 blocks, want %d", c, fifoBlock<<fifoMaxGrowth)
	}
}

// TestFifoKeep mixes pushes, pops and keeps across block boundaries
// against a slice: keep drops exactly the items it is told to, keeps the
// order and the count, and the queue works on after it.
func TestFifoKeep(t *testing.T) {
	var f fifo[int]
	var model []int
	rnd := rand.New(rand.NewPCG(11, 12))
	next := 0
	for step := 0; step < 300_000; step++ {
		switch k := rnd.IntN(1000); {
		case k < 700:
			f.push(next)
			model = append(model, next)
			next++
		case k < 999:
			if len(model) > 0 {
				f.pop()
				model = model[1:]
			}
		default:
			mod := 2 + rnd.IntN(60)
			drop := func(x int) bool { return x%mod == 0 }
			f.keep(func(x *int) bool { return !drop(*x) })
			model = slices.DeleteFunc(model, drop)
		}
		if f.n != len(model) {
			t.Fatalf("step %d: %d queued, want %d", step, f.n, len(model))
		}
		x, ok := f.peek()
		if ok != (len(model) > 0) || ok && *x != model[0] {
			t.Fatalf("step %d: peek %v %v, want the front of %d items", step, x, ok, len(model))
		}
	}
	if f.grown < 3 {
		t.Errorf("%d blocks made: the test did not cross blocks", f.grown)
	}
	for len(model) > 0 {
		if x, _ := f.peek(); *x != model[0] {
			t.Fatalf("drained %d, want %d", *x, model[0])
		}
		f.pop()
		model = model[1:]
	}
	if _, ok := f.peek(); ok || f.n != 0 {
		t.Errorf("items left after the last was popped (%d counted)", f.n)
	}
}

// TestExpiriesInTimeOrder: a CLOSE entry's 10 s timeout, queued after
// TIME_WAIT's 120 s ones, comes due at its own time (one queue of both
// held it behind every TIME_WAIT timeout queued before it).
func TestExpiriesInTimeOrder(t *testing.T) {
	var r runner
	r.exp[expTimeWait].push(expiry{at: 120e9, id: 1})
	r.exp[expClose].push(expiry{at: 15e9, id: 2})
	if q := r.dueExpiry(10e9); q != nil {
		t.Fatalf("due at 10 s: %+v", q)
	}
	q := r.dueExpiry(20e9)
	if x, _ := q.peek(); q != &r.exp[expClose] || x.id != 2 {
		t.Fatalf("due at 20 s: queue %p, want the CLOSE queue", q)
	}
	q.pop()
	if q := r.dueExpiry(100e9); q != nil {
		t.Fatalf("due at 100 s: %+v", q)
	}
	if q := r.dueExpiry(130e9); q != &r.exp[expTimeWait] {
		t.Fatalf("due at 130 s: %p, want the TIME_WAIT queue", q)
	}
}
