package natmodel

// hmap is an open-addressing hash map from a 96-bit key to an int32, with
// linear probing and backward-shift deletion (no tombstones, so probe chains
// stay short however many entries come and go). It is the model's conntrack
// and bysource hash; Go maps spent most of the model's time in probing.
// A key with b == 0 is reserved as "empty": packed keys never have it. A
// slot is 16 bytes and the load stays at most 1/2, so the table of a busy
// node stays small enough for the CPU caches as long as it can.
type hmap struct {
	slots []slot
	mask  uint64
	n     int
}

type slot struct {
	a uint64
	b uint32
	v int32
}

func newHmap() hmap {
	const initial = 1 << 10
	return hmap{slots: make([]slot, initial), mask: initial - 1}
}

func hash128(a uint64, b uint32) uint64 {
	h := a*0x9e3779b97f4a7c15 ^ uint64(b)*0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>32
}

func (m *hmap) get(a uint64, b uint32) (int32, bool) {
	for i := hash128(a, b) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.b == 0 {
			return 0, false
		}
		if s.a == a && s.b == b {
			return s.v, true
		}
	}
}

// find returns the slot of a key, or the empty slot where it would go.
func (m *hmap) find(a uint64, b uint32) (i uint64, found bool) {
	for i = hash128(a, b) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.b == 0 {
			return i, false
		}
		if s.a == a && s.b == b {
			return i, true
		}
	}
}

// putAt stores a key known to be absent into the empty slot i that find
// returned, with no growth in between.
func (m *hmap) putAt(i uint64, a uint64, b uint32, v int32) {
	m.slots[i] = slot{a, b, v}
	m.n++
}

// reserve grows the table so that k more keys fit without growing.
func (m *hmap) reserve(k int) {
	for 2*(m.n+k) > len(m.slots) {
		m.grow()
	}
}

func (m *hmap) put(a uint64, b uint32, v int32) {
	if 2*(m.n+1) > len(m.slots) {
		m.grow()
	}
	for i := hash128(a, b) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.b == 0 {
			*s = slot{a, b, v}
			m.n++
			return
		}
		if s.a == a && s.b == b {
			s.v = v
			return
		}
	}
}

func (m *hmap) del(a uint64, b uint32) {
	i := hash128(a, b) & m.mask
	for {
		s := &m.slots[i]
		if s.b == 0 {
			return
		}
		if s.a == a && s.b == b {
			break
		}
		i = (i + 1) & m.mask
	}
	m.n--
	j := i
	for {
		j = (j + 1) & m.mask
		s := m.slots[j]
		if s.b == 0 {
			break
		}
		k := hash128(s.a, s.b) & m.mask
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
	m.mask = uint64(len(m.slots) - 1)
	m.n = 0
	for _, s := range old {
		if s.b != 0 {
			m.put(s.a, s.b, s.v)
		}
	}
}

// pack returns a key as the words hmap uses. The protocol is not part of
// it: each protocol has its own table. b is never 0 because ports are not.
func (k key) pack() (a uint64, b uint32) {
	return uint64(k.src)<<32 | uint64(k.dst), uint32(k.sport)<<16 | uint32(k.dport)
}

func (k srcKey) pack() (a uint64, b uint32) {
	return uint64(k.ip)<<24 | uint64(k.port)<<8 | uint64(k.proto), 1
}

// presize grows m to hold n keys without growing again.
func (m *hmap) presize(n int) {
	for 2*n > len(m.slots) {
		m.grow()
	}
}
