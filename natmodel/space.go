package natmodel

import (
	"fmt"
	"math/bits"
)

// A port space is every tuple that differs from another only in its
// destination port: (src, dst, sport, proto). "Is this NAT source port
// free?" asks the confirmed hash for the reply tuple (server -> nat ip:port),
// which varies only in that port, so a port search walks one space.
//
// On a node whose NAT range is exhausted every try of every search hits a
// confirmed entry, and each hit reads that entry (a cache miss): 248 tries
// per SYN on 5.0+, the whole range before 5.0. A space that a search found
// full is therefore indexed: a bitset of its taken ports, kept in step with
// the confirmed hash from then on, answers the tries instead. Indexing
// changes no result, only the cost: the index holds exactly the tuples the
// hash holds.

// spaceKey names a port space.
type spaceKey struct {
	addrs uint64
	sport uint16
	proto Proto
}

func spaceOf(k key) spaceKey { return spaceKey{addrs: k.addrs, sport: k.sport(), proto: k.proto} }

// portSet is the taken destination ports of one indexed space.
type portSet struct {
	bits [1 << 16 / 64]uint64
	// full has bit i set when every port of bits[i] is taken, so that a
	// scan passes a run of taken ports 4,096 at a time (a legacy search
	// from a fixed offset passes every port taken before it).
	full [1 << 16 / 64 / 64]uint64
	// reads counts the words firstFree has read: the model's own cost.
	reads uint64
	// watch counts the taken ports of the range allTaken was last asked
	// about, kept in step by set and clear.
	watch struct {
		min, end, taken uint32
		on              bool
	}
}

func (s *portSet) has(p uint16) bool { return s.bits[p>>6]&(1<<(p&63)) != 0 }

func (s *portSet) set(p uint16) {
	if w, b := &s.bits[p>>6], uint64(1)<<(p&63); *w&b == 0 {
		*w |= b
		if *w == ^uint64(0) {
			s.full[p>>12] |= 1 << (p >> 6 & 63)
		}
		s.watched(p, 1)
	}
}

func (s *portSet) clear(p uint16) {
	if w, b := &s.bits[p>>6], uint64(1)<<(p&63); *w&b != 0 {
		*w &^= b
		s.full[p>>12] &^= 1 << (p >> 6 & 63)
		s.watched(p, ^uint32(0))
	}
}

// fullWords returns how many words from word w on, at most most, have
// every port taken.
func (s *portSet) fullWords(w, most uint32) uint32 {
	for k := uint32(0); k < most; {
		j := w + k
		s.reads++
		if m := ^s.full[j>>6] >> (j & 63); m != 0 {
			return min(k+uint32(bits.TrailingZeros64(m)), most)
		}
		k += 64 - j&63
	}
	return most
}

// watched adds d to the watched count when p is in the watched range.
func (s *portSet) watched(p uint16, d uint32) {
	if w := &s.watch; w.on && uint32(p) >= w.min && uint32(p) < w.end {
		w.taken += d
	}
}

// allTaken reports whether every port of [min, min+size) is taken
// (min+size <= 65536). On an exhausted node every search asks, about the
// same range: the range's ports are counted once, then kept counted as
// they are taken and freed, so that the answer costs nothing however
// often ports change (a node evicting TIME_WAIT entries frees and takes
// one between most searches).
func (s *portSet) allTaken(min, size uint32) bool {
	w := &s.watch
	if !w.on || w.min != min || w.end != min+size {
		w.min, w.end, w.taken, w.on = min, min+size, 0, true
		for p := min; p < min+size; {
			s.reads++
			word := s.bits[p>>6] >> (p & 63)
			if span := 64 - p&63; span > min+size-p {
				word &= 1<<(min+size-p) - 1
			}
			w.taken += uint32(bits.OnesCount64(word))
			p += 64 - p&63
		}
	}
	return w.taken == size
}

// indexAfter is how many taken tries in a row make a search index its
// space: half a 5.0 round (6.5's eviction ends a round after 96 taken
// tries when the space is full of closing entries).
const indexAfter = 64

// spaceFor returns the index of the space of reply tuple k, building it
// from the confirmed entries when build is set and it does not exist yet.
func (t *Table) spaceFor(k key, build bool) *portSet {
	sk := spaceOf(k)
	if s := t.lookupSpace(sk); s != nil || !build {
		return s
	}
	if t.spaces == nil {
		t.spaces = map[spaceKey]*portSet{}
	}
	s := &portSet{}
	for i := range t.conns {
		c := &t.conns[i]
		if !c.inUse || !c.confirmed {
			continue
		}
		if !c.fakeOrig && spaceOf(c.orig) == sk {
			s.set(c.orig.dport())
		}
		if spaceOf(c.reply) == sk {
			s.set(c.reply.dport())
		}
	}
	t.spaces[sk] = s
	t.lastSpace = lastSpace{key: sk, set: s, valid: true}
	return s
}

// lastSpace remembers the last space looked up, found or not: one SNAT
// asks for the same space up to three times (the preserved port, the
// search, the confirm), and a map lookup hashes its 16-byte key each time.
type lastSpace struct {
	key   spaceKey
	set   *portSet
	valid bool
}

// lookupSpace returns the index of space sk, or nil.
func (t *Table) lookupSpace(sk spaceKey) *portSet {
	if t.lastSpace.valid && t.lastSpace.key == sk {
		return t.lastSpace.set
	}
	s := t.spaces[sk]
	t.lastSpace = lastSpace{key: sk, set: s, valid: true}
	return s
}

// indexOf returns the index of the space of tuple k, or nil when it has
// none or the table reports every try (Config.OnTry: the kernel's way,
// lookup by lookup).
func (t *Table) indexOf(k key) *portSet {
	if len(t.spaces) == 0 || t.onTry != nil {
		return nil
	}
	return t.lookupSpace(spaceOf(k))
}

// indexed records a confirmed tuple entering (in) or leaving the hash in
// the indexed space it belongs to, if any.
func (t *Table) indexed(k key, in bool) {
	if len(t.spaces) == 0 {
		return
	}
	if s := t.lookupSpace(spaceOf(k)); s != nil {
		if in {
			s.set(k.dport())
		} else {
			s.clear(k.dport())
		}
	}
}

// flowPorts are the ports an indexed space holds for the one confirmed
// entry of the searching entry's own flow (same original tuple), which the
// 5.0+ search does not count as taken; -1 for none.
type flowPorts [2]int32

var noFlowPorts = flowPorts{-1, -1}

// sameFlowPorts finds, with one lookup, the confirmed entry whose original
// tuple is self's (there is at most one) and returns its ports in space sk.
func (t *Table) sameFlowPorts(self int32, sk spaceKey) flowPorts {
	if !t.era.SameFlowNotTaken() {
		return noFlowPorts
	}
	c := &t.conns[self]
	if c.fresh && !t.verify {
		return noFlowPorts
	}
	v, ok := t.hash(c.orig.proto).get(c.orig.pack())
	if ok && c.fresh {
		panic(fmt.Sprintf("natmodel: NewConnFresh: tuple %v taken by entry %d before the first was confirmed", c.orig.tuple(), v>>1))
	}
	if !ok || v&1 != dirOriginal {
		return noFlowPorts
	}
	x := &t.conns[v>>1]
	fp := noFlowPorts
	if spaceOf(x.orig) == sk {
		fp[0] = int32(x.orig.dport())
	}
	if spaceOf(x.reply) == sk {
		fp[1] = int32(x.reply.dport())
	}
	return fp
}

// usedIn is used for a candidate whose reply's space is indexed, without
// reading any entry: the bit says whether the reply tuple is in the hash,
// and a port of self's own flow is not taken (5.0+).
func (t *Table) usedIn(s *portSet, tp key, fp flowPorts) bool {
	p := tp.sport()
	if !s.has(p) || int32(p) == fp[0] || int32(p) == fp[1] {
		return false
	}
	t.stats.Found++
	return true
}

// firstFree returns the position of the first free port among the n
// consecutive ports from p (which stay within 0..65535): a port whose bit
// is clear, or one of self's own flow; ok is false when all are taken.
func (s *portSet) firstFree(p, n uint32, fp flowPorts) (uint32, bool) {
	best, ok := uint32(0), false
	for i := uint32(0); i < n; {
		q := p + i
		if q&63 == 0 {
			if k := s.fullWords(q>>6, (n-i)/64); k > 0 {
				i += 64 * k
				continue
			}
		}
		s.reads++
		w := ^s.bits[q>>6] >> (q & 63) // free ports from q, in the low bits
		if span := 64 - q&63; span > n-i {
			w &= 1<<(n-i) - 1
		}
		if w != 0 {
			best, ok = i+uint32(bits.TrailingZeros64(w)), true
			break
		}
		i += 64 - q&63
	}
	for _, f := range fp {
		if f >= 0 && uint32(f) >= p && uint32(f) < p+n && (!ok || uint32(f)-p < best) {
			best, ok = uint32(f)-p, true
		}
	}
	return best, ok
}

// scan answers tries from..to-1 of a search at once: try i tests port
// min + (off+i) % size, off a u16 that wraps at 65536, as the kernel's loop
// does. It returns the first try whose port is free, or to when none is,
// and counts the taken ports it passed as the kernel's lookups would
// (Found).
func (t *Table) scan(s *portSet, min, size uint32, off uint16, from, to uint32, fp flowPorts) uint32 {
	if fp == noFlowPorts && s.allTaken(min, size) {
		t.stats.Found += uint64(to - from)
		return to
	}
	for i := from; i < to; {
		o := uint32(off + uint16(i))
		start := o % size
		n := to - i
		n = minU32(n, 65536-o)
		n = minU32(n, size-start)
		if j, ok := s.firstFree(min+start, n, fp); ok {
			t.stats.Found += uint64(i - from + j)
			return i + j
		}
		i += n
	}
	t.stats.Found += uint64(to - from)
	return to
}

func minU32(a, b uint32) uint32 {
	if a < b {
		return a
	}
	return b
}
