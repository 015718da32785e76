package natmodel

import (
	"unsafe"

	"github.com/snatrace/snatrace/internal/hugepage"
	"github.com/snatrace/snatrace/internal/prefetch"
)

// hmap is an open-addressing hash map from a 96-bit key to an int32 value,
// with linear probing and backward-shift deletion (no tombstones, so probe
// chains stay short however many entries come and go). It is the model's
// conntrack and bysource hash.
//
// A slot is 8 bytes: 32 bits of the key's hash and the value. The key itself
// is not stored: when a hash matches, the key is read from the entry the
// value names (keyOf), and a deletion that knows its value (slotOf, delVal)
// reads no key at all. Small tables are kept sparse (see full). Most lookups of a busy node ask "is this tuple free?" and
// end on an empty slot without reading any entry, and the small slots keep
// the table in the CPU caches as long as possible (a Go map spent most of
// the model's time in probing, 24-byte slots most of it in cache misses).
type hmap struct {
	slots []slot
	mask  uint64
	n     int
	// t, when set, is the Table whose entries hold the keys (kind says
	// which key): the hot path reads them directly, without an interface
	// call. Otherwise keys is asked.
	t    *Table
	kind uint8
	keys keyer
}

// Kinds of keys a Table's hmap holds.
const (
	kindCT  = 1 // value idx<<1 | dir: the tuple of that direction
	kindSrc = 2 // value idx: the original source of the entry
)

// keyer returns the key a stored value belongs to.
type keyer interface {
	keyOf(v int32) (a uint64, b uint32)
}

type slot struct {
	h  uint32 // hash of the key
	v1 int32  // value + 1; 0 marks an empty slot
}

func newHmap(k keyer) hmap {
	const initial = 1 << 10
	return hmap{slots: make([]slot, initial), mask: initial - 1, keys: k}
}

// newTableHmap returns an hmap whose keys are read from t's entries.
func newTableHmap(t *Table, kind uint8) hmap {
	const initial = 1 << 10
	return hmap{slots: make([]slot, initial), mask: initial - 1, t: t, kind: kind}
}

// keyOf returns the key a stored value belongs to.
func (m *hmap) keyOf(v int32) (uint64, uint32) {
	switch m.kind {
	case kindCT:
		c := &m.t.conns[v>>1]
		if v&1 == dirReply {
			return c.reply.pack()
		}
		return c.orig.pack()
	case kindSrc:
		c := &m.t.conns[v]
		return srcKey{c.orig.src(), c.orig.sport(), c.orig.proto}.pack()
	}
	return m.keys.keyOf(v)
}

func hash32(a uint64, b uint32) uint32 {
	h := a*0x9e3779b97f4a7c15 ^ uint64(b)*0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return uint32(h >> 32)
}

func (m *hmap) match(s *slot, h uint32, a uint64, b uint32) bool {
	if s.h != h {
		return false
	}
	ka, kb := m.keyOf(s.v1 - 1)
	return ka == a && kb == b
}

func (m *hmap) get(a uint64, b uint32) (int32, bool) {
	h := hash32(a, b)
	for i := uint64(h) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.v1 == 0 {
			return 0, false
		}
		if m.match(s, h, a, b) {
			return s.v1 - 1, true
		}
	}
}

// find returns the slot of a key, or the empty slot where it would go, and
// the key's hash.
func (m *hmap) find(a uint64, b uint32) (i uint64, h uint32, found bool) {
	h = hash32(a, b)
	for i = uint64(h) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.v1 == 0 {
			return i, h, false
		}
		if m.match(s, h, a, b) {
			return i, h, true
		}
	}
}

// prefetch starts loading the home slot of a key, where its lookup
// begins.
func (m *hmap) prefetch(a uint64, b uint32) {
	prefetch.Line(unsafe.Pointer(&m.slots[uint64(hash32(a, b))&m.mask]))
}

// value returns the value in slot i (which find reported found).
func (m *hmap) value(i uint64) int32 { return m.slots[i].v1 - 1 }

// putAt stores a key with hash h (as find returned it), known to be absent,
// into the empty slot i that find returned, with no growth in between.
func (m *hmap) putAt(i uint64, h uint32, v int32) {
	m.slots[i] = slot{h: h, v1: v + 1}
	m.n++
}

// smallSlots is the size up to which a table is kept at most 1/8 full;
// larger tables may fill to 1/2. A small table (up to 512 KiB) stays in the
// L2 cache whatever its load, and at 1/8 almost every lookup ends on its
// home slot or the next one, so the probe loop's exit is predictable (at 1/2
// a miss walks 2.5 slots on average and its exit costs a branch
// misprediction; an attempt makes about ten lookups). A large table is
// bound by cache misses instead, and a sparser one only makes more of them.
const smallSlots = 1 << 16

// full reports whether n keys are more than the table should hold.
func (m *hmap) full(n int) bool {
	if len(m.slots) < smallSlots {
		return 8*n > len(m.slots)
	}
	return 2*n > len(m.slots)
}

// reserve grows the table so that k more keys fit without growing.
func (m *hmap) reserve(k int) {
	for m.full(m.n + k) {
		m.grow()
	}
}

// put stores v for the key, replacing the value of a key already there.
func (m *hmap) put(a uint64, b uint32, v int32) {
	m.reserve(1)
	i, h, found := m.find(a, b)
	if found {
		m.slots[i].v1 = v + 1
		return
	}
	m.putAt(i, h, v)
}

func (m *hmap) del(a uint64, b uint32) {
	i, _, found := m.find(a, b)
	if !found {
		return
	}
	m.delAt(i)
}

// slotOf returns the slot that holds value v for a key (a, b), without
// reading any key: a value is stored at most once in a table (each names
// one direction of one entry, or one bysource list head).
func (m *hmap) slotOf(a uint64, b uint32, v int32) (uint64, bool) {
	for i := uint64(hash32(a, b)) & m.mask; ; i = (i + 1) & m.mask {
		switch m.slots[i].v1 {
		case v + 1:
			return i, true
		case 0:
			return 0, false
		}
	}
}

// delVal deletes the key (a, b), known to hold value v.
func (m *hmap) delVal(a uint64, b uint32, v int32) {
	if i, ok := m.slotOf(a, b, v); ok {
		m.delAt(i)
	}
}

// delAt empties slot i and shifts the rest of its probe run back.
func (m *hmap) delAt(i uint64) {
	m.n--
	j := i
	for {
		j = (j + 1) & m.mask
		s := m.slots[j]
		if s.v1 == 0 {
			break
		}
		k := uint64(s.h) & m.mask
		// Move s into the hole at i unless its home k lies cyclically in (i, j].
		if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			m.slots[i] = s
			i = j
		}
	}
	m.slots[i] = slot{}
}

func (m *hmap) grow() {
	old := m.slots
	m.slots = make([]slot, 2*len(old))
	hugepage.Slice(m.slots)
	m.mask = uint64(len(m.slots) - 1)
	for _, s := range old {
		if s.v1 == 0 {
			continue
		}
		i := uint64(s.h) & m.mask
		for m.slots[i].v1 != 0 {
			i = (i + 1) & m.mask
		}
		m.slots[i] = s
	}
}

// presize grows m to at least 2n slots: size hints are upper bounds (the
// simulator passes its connection count), so a small table grows further
// as it fills rather than taking 8 slots a key up front.
func (m *hmap) presize(n int) {
	size := len(m.slots)
	for 2*n > size {
		size *= 2
	}
	if size > len(m.slots) && m.n == 0 {
		// Empty: allocate the final size at once rather than doubling.
		m.slots, m.mask = make([]slot, size), uint64(size-1)
		hugepage.Slice(m.slots)
	}
	for len(m.slots) < size {
		m.grow()
	}
}

// pack returns a key as the words hmap uses. The protocol is not part of
// it: each protocol has its own table.
func (k key) pack() (a uint64, b uint32) {
	return k.addrs, k.ports
}

func (k srcKey) pack() (a uint64, b uint32) {
	return uint64(k.ip)<<24 | uint64(k.port)<<8 | uint64(k.proto), 1
}
