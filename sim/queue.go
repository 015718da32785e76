package sim

import (
	"cmp"
	"slices"

	"github.com/snatrace/snatrace/internal/hugepage"
)

// The simulator's pending events. A run keeps about one timer per
// connection in flight — a retransmission up to 64 s out, a close — and a
// few events within the next microseconds. One binary heap over all of
// them costs a cache-missing walk of ~20 levels per push and pop at a
// million connections; instead, later events go to a ring of buckets (a
// calendar queue), each sorted once when the clock reaches its slot and
// taken in order from there (a sort of a slot's few dozen events costs
// less than a heap push and pop of each), and events pushed within the
// current slot go to a small heap beside it. In front of them all, one
// slot holds an event pushed before every other (a SYN's confirm, a
// fraction of a microsecond after its NAT step, most often is): it leaves
// without touching either. The order is one heap's, (at, kind, seq),
// exactly.

const (
	bucketShift = 18 // a slot of 2^18 ns, about 262 µs
	ringSize    = 1 << 19
	ringSpan    = int64(ringSize) << bucketShift // about 137 s
)

// eventQueue is a min-priority queue of events on (at, kind, seq). Events
// must not be pushed before the last popped one.
type eventQueue struct {
	first    event // when hasFirst: earlier than every other event queued
	hasFirst bool
	near     eventHeap // events pushed before horizon
	run      []event   // the current slot's events from the ring, sorted; run[pos:] are queued
	pos      int
	horizon  int64   // end of the slot the heap covers
	ring     []int32 // per slot in [horizon, horizon+ringSpan): its last chunk + 1, 0 for none
	inRing   int
	far      eventHeap // events from horizon+ringSpan on
	chunks   slab[chunk]
	free     []int32 // chunks of slots already moved to the heap
}

// chunk holds events of one ring slot; a slot's chunks are chained from
// its newest. Chunks are recycled: a busy slot takes no allocation and no
// copy as it fills (a slice per slot, growing, spent 8 % of an exhausted
// run in growslice).
type chunk struct {
	ev   [chunkLen]event
	n    int32
	prev int32 // the slot's previous chunk + 1, 0 for none
}

const (
	chunkLen = 16
	// chunkSlabShift: chunks are made 1,024 at a time (392 KiB): a small
	// scenario of a sweep allocates little.
	chunkSlabShift = 10
)

func (q *eventQueue) push(e event) {
	switch {
	case q.hasFirst && before(&e, &q.first):
		e, q.first = q.first, e
	case !q.hasFirst && q.beforeAll(&e):
		q.first, q.hasFirst = e, true
		return
	}
	q.queue(e)
}

// beforeAll reports whether e comes before every event of the heap, the
// run and the ring (false when that would take a look into the ring).
func (q *eventQueue) beforeAll(e *event) bool {
	if m := q.min(); m != nil {
		return before(e, m)
	}
	return e.at < q.horizon
}

// min returns the earliest event of the heap and the run, or nil.
func (q *eventQueue) min() *event {
	var m *event
	if q.pos < len(q.run) {
		m = &q.run[q.pos]
	}
	if len(q.near) > 0 && (m == nil || before(&q.near[0], m)) {
		m = &q.near[0]
	}
	return m
}

// queue files e by its time: the heap, a ring slot or the far heap.
func (q *eventQueue) queue(e event) {
	switch {
	case e.at < q.horizon:
		q.near.push(e)
	case e.at-q.horizon < ringSpan:
		if q.ring == nil {
			q.ring = make([]int32, ringSize)
			q.chunks.shift = chunkSlabShift
		}
		i := (e.at >> bucketShift) & (ringSize - 1)
		h := q.ring[i]
		if h == 0 || q.chunks.at(h-1).n == chunkLen {
			c := q.newChunk()
			q.chunks.at(c).prev = h
			h = c + 1
			q.ring[i] = h
		}
		c := q.chunks.at(h - 1)
		c.ev[c.n] = e
		c.n++
		q.inRing++
	default:
		q.far.push(e)
	}
}

// newChunk returns an empty chunk, recycled when one is free.
func (q *eventQueue) newChunk() int32 {
	if n := len(q.free); n > 0 {
		c := q.free[n-1]
		q.free = q.free[:n-1]
		q.chunks.at(c).n = 0
		return c
	}
	return q.chunks.add(chunk{})
}

// next returns the time of the earliest event, moving later slots into the
// heap as needed; ok is false when the queue is empty.
func (q *eventQueue) next() (at int64, ok bool) {
	if q.hasFirst {
		return q.first.at, true
	}
	for {
		if m := q.min(); m != nil {
			return m.at, true
		}
		if q.inRing == 0 && len(q.far) == 0 {
			return 0, false
		}
		q.advance()
	}
}

// pop removes and returns the earliest event; next must have reported one.
func (q *eventQueue) pop() event {
	if q.hasFirst {
		q.hasFirst = false
		return q.first
	}
	if q.pos < len(q.run) && (len(q.near) == 0 || before(&q.run[q.pos], &q.near[0])) {
		q.pos++
		return q.run[q.pos-1]
	}
	return q.near.pop()
}

// advance moves the clock's horizon one slot on: that slot's events, and
// the far events that now fall within the ring, come into reach. The heap
// and the run are empty.
func (q *eventQueue) advance() {
	if q.inRing == 0 && len(q.far) > 0 && q.far[0].at >= q.horizon+ringSpan {
		// Nothing for a whole ring: jump to the far events' slot.
		q.horizon = q.far[0].at &^ (1<<bucketShift - 1)
	}
	slot := q.horizon
	q.horizon = slot + 1<<bucketShift
	q.run, q.pos = q.run[:0], 0
	if q.ring != nil {
		i := (slot >> bucketShift) & (ringSize - 1)
		for h := q.ring[i]; h != 0; {
			c := q.chunks.at(h - 1)
			q.run = append(q.run, c.ev[:c.n]...)
			q.inRing -= int(c.n)
			q.free = append(q.free, h-1)
			h = c.prev
		}
		q.ring[i] = 0
		slices.SortFunc(q.run, compareEvents)
	}
	for len(q.far) > 0 && q.far[0].at-q.horizon < ringSpan {
		q.queue(q.far.pop())
	}
}

type event struct {
	at   int64 // ns
	seq  uint64
	kind uint8
	conn int32
}

// eventHeap is a binary min-heap on (at, kind, seq); seq makes ties
// deterministic.
type eventHeap []event

func (h eventHeap) less(i, j int) bool { return before(&h[i], &h[j]) }

// compareEvents is before as a three-way comparison.
func compareEvents(a, b event) int {
	if a.at != b.at {
		return cmp.Compare(a.at, b.at)
	}
	if a.kind != b.kind {
		return cmp.Compare(a.kind, b.kind)
	}
	return cmp.Compare(a.seq, b.seq)
}

// before is the queue's order: time, then kind, then push order.
func before(a, b *event) bool {
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

// slab is a growing array that never moves what it holds: a million
// connections in flight are added without copying the ones before. It
// grows by chunks of 2^shift items (slabShift when shift is 0 at the first
// add).
type slab[T any] struct {
	chunks [][]T
	n      int32
	shift  uint8
}

const slabShift = 16

// add appends x and returns its index.
func (s *slab[T]) add(x T) int32 {
	if s.shift == 0 {
		s.shift = slabShift
	}
	if int(s.n>>s.shift) == len(s.chunks) {
		c := make([]T, 1<<s.shift)
		hugepage.Slice(c)
		s.chunks = append(s.chunks, c)
	}
	s.chunks[s.n>>s.shift][s.n&(1<<s.shift-1)] = x
	s.n++
	return s.n - 1
}

// at returns the element at index i (< the number added).
func (s *slab[T]) at(i int32) *T { return &s.chunks[i>>s.shift][i&(1<<s.shift-1)] }

// fifo is a queue of timed items whose times only grow (expiries, port
// releases), in blocks: a million entries in TIME_WAIT are queued without
// ever copying the queue, and emptied blocks are reused. Blocks grow from
// 4,096 items to 65,536 (2 MiB and more, marked for huge pages) as the
// queue does: a small run allocates little, a large one faults in few pages.
type fifo[T any] struct {
	blocks [][]T // blocks[0][head:] is the front; each is filled to its capacity
	head   int
	spare  [][]T
	grown  int // blocks made so far
	n      int // items queued
}

const (
	fifoBlock     = 4096
	fifoMaxGrowth = 4 // blocks stop growing at 4,096 << 4 = 65,536 items
)

func (f *fifo[T]) push(x T) {
	if n := len(f.blocks); n == 0 || len(f.blocks[n-1]) == cap(f.blocks[n-1]) {
		var b []T
		if k := len(f.spare); k > 0 {
			b, f.spare = f.spare[k-1][:0], f.spare[:k-1]
		} else {
			b = make([]T, 0, fifoBlock<<min(f.grown, fifoMaxGrowth))
			hugepage.Slice(b)
			f.grown++
		}
		f.blocks = append(f.blocks, b)
	}
	last := &f.blocks[len(f.blocks)-1]
	*last = append(*last, x)
	f.n++
}

// keep drops the items keep says no to, in place, keeping the order; the
// blocks it empties become spare.
func (f *fifo[T]) keep(keep func(*T) bool) {
	if len(f.blocks) == 0 {
		return
	}
	wb, wi, kept := 0, f.head, 0 // where the next kept item goes
	for b := range f.blocks {
		from := 0
		if b == 0 {
			from = f.head
		}
		for i := from; i < len(f.blocks[b]); i++ {
			if x := &f.blocks[b][i]; keep(x) {
				if wi == cap(f.blocks[wb]) {
					wb, wi = wb+1, 0
				}
				f.blocks[wb][wi] = *x
				wi, kept = wi+1, kept+1
			}
		}
	}
	for b := wb + 1; b < len(f.blocks); b++ {
		f.spare = append(f.spare, f.blocks[b][:0])
	}
	f.blocks[wb] = f.blocks[wb][:wi]
	f.blocks = f.blocks[:wb+1]
	f.n = kept
}

func (f *fifo[T]) peek() (*T, bool) {
	if len(f.blocks) == 0 || f.head >= len(f.blocks[0]) {
		return nil, false
	}
	return &f.blocks[0][f.head], true
}

func (f *fifo[T]) pop() {
	f.n--
	f.head++
	if f.head == cap(f.blocks[0]) {
		f.spare = append(f.spare, f.blocks[0])
		f.blocks = f.blocks[1:]
		f.head = 0
	}
}
