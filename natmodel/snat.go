package natmodel

import (
	"fmt"
	"net/netip"
)

// Step names the branch of get_unique_tuple that produced a Choice.
type Step uint8

// Steps of get_unique_tuple, in the kernel's order.
const (
	// StepOriginal: the original tuple was already in range and unused.
	StepOriginal Step = iota + 1
	// StepBySource: an existing mapping of the same source (bysource hash,
	// unconfirmed entries included) was reused.
	StepBySource
	// StepPreserve: the original port was kept on the chosen address (port
	// preservation), or a single-port range was returned regardless.
	StepPreserve
	// StepSearch: nf_nat_l4proto_unique_tuple found an unused port.
	StepSearch
	// StepExhausted: the search found no unused port; the last tried port is
	// kept and will clash at confirm.
	StepExhausted
)

func (s Step) String() string {
	switch s {
	case StepOriginal:
		return "original"
	case StepBySource:
		return "bysource"
	case StepPreserve:
		return "preserve"
	case StepSearch:
		return "search"
	case StepExhausted:
		return "exhausted"
	}
	return "step?"
}

// Choice is the outcome of SNAT: the new source and how it was found.
type Choice struct {
	Source netip.AddrPort
	Step   Step
	// Tries counts the ports the search tested (0 when no search ran).
	Tries int
	// Rounds counts the search rounds (5.0+: 1 to 5).
	Rounds int
	// Evicted counts TIME_WAIT entries the search killed (6.5+).
	Evicted int
	// Taken is true when the chosen tuple was already in use when chosen
	// (exhausted search, single-port range): a certain clash at confirm.
	Taken bool
	// Work is the model's own cost of the choice, not a kernel quantity:
	// the hash lookups it made plus the words of port bitsets it read
	// (space.go). A simulator bounds its run time by it.
	Work int
}

// SNAT is nf_nat_setup_info(ct, r, NF_NAT_MANIP_SRC) for an unconfirmed
// entry: it picks the new source with get_unique_tuple, rewrites the reply
// tuple and adds the entry to the bysource hash. r must pass Validate.
func (t *Table) SNAT(id ConnID, r *Range) (Choice, error) {
	idx, ok := t.get(id)
	if !ok || t.conns[idx].confirmed || t.conns[idx].natDone {
		return Choice{}, ErrUnknownConn
	}
	var x rng
	r.internal(&x)
	// Grow the bysource hash now, so that a slot findAppropriateSrc finds
	// stays valid for bysrcAdd.
	if !t.noBysrc {
		t.bysrc.reserve(1)
	}
	t.srcHint.valid = false
	var ch Choice
	cur := t.conns[idx].reply.invert() // the original tuple, as DNAT left it
	nt := t.uniqueTuple(idx, cur, &x, &ch)
	c := &t.conns[idx]
	if nt != cur {
		c.reply = nt.invert()
		c.srcNAT = true
	}
	t.bysrcAdd(idx)
	ch.Source = netip.AddrPortFrom(addr4(nt.src()), nt.sport())
	return ch, nil
}

// Prefetch starts loading, without waiting, the hash slots that NewConn
// and then SNAT through r (nil: no NAT) will read first for a flow with
// original tuple orig: the tuple's conntrack slot, its source's bysource
// slot, and the slot of the tuple SNAT tries to keep. On a table of
// millions of entries each is a cache miss; called when the connection
// starts, well before its SYN is processed, they overlap one another and
// the work in between. A table of less than prefetchSlots slots is left
// alone: its lines are mostly cached already, and the prefetch would only
// cost. r must pass Validate, as for SNAT. It changes nothing.
func (t *Table) Prefetch(orig Tuple, r *Range) {
	if len(t.hashes[0].slots) < prefetchSlots && len(t.hashes[1].slots) < prefetchSlots {
		return
	}
	k, err := orig.key()
	if err != nil {
		return
	}
	h := t.hash(k.proto)
	h.prefetch(k.pack())
	if r == nil {
		return
	}
	if !t.noBysrc {
		t.bysrc.prefetch(srcKey{k.src(), k.sport(), k.proto}.pack())
	}
	var x rng
	r.internal(&x)
	if x.flags&RandomAll == 0 {
		tp := k
		findBestIPs(&tp, &x)
		h.prefetch(tp.invert().pack())
	}
}

// prefetchSlots is the hash size (4 MiB of slots) from which Prefetch
// prefetches: an exhausted node's table of 65,536 entries (2 MiB) stays
// mostly cached, and prefetching it cost 2 % of the run.
const prefetchSlots = 1 << 19

// used is nf_nat_used_tuple: is the reply of tuple tp in the confirmed hash
// (as either direction of another entry)?
func (t *Table) used(tp key, self int32) bool {
	if s := t.indexOf(tp.invert()); s != nil {
		return t.usedIn(s, tp, t.sameFlowPorts(self, spaceOf(tp.invert())))
	}
	v, ok := t.hash(tp.proto).get(tp.invert().pack())
	if !ok {
		return false
	}
	other := v >> 1
	if other == self {
		return false
	}
	// 5.0+: an entry of the same flow (same original tuple) is not "taken";
	// nf_ct_resolve_clash sorts it out at confirm.
	if t.era.SameFlowNotTaken() && t.conns[other].orig == t.conns[self].orig {
		return false
	}
	t.stats.Found++
	return true
}

// peekUsed reports whether tp is taken without counting (for Choice.Taken).
func (t *Table) peekUsed(tp key, self int32) bool {
	v, ok := t.hash(tp.proto).get(tp.invert().pack())
	return ok && v>>1 != self
}

// usedHarder is nf_nat_used_tuple_harder (6.5+): in the last 32 tries of a
// round, a colliding TCP entry that is closing (TIME_WAIT or later), was
// SNATed and whose sequence numbers the new SYN has passed is killed.
func (t *Table) usedHarder(tp key, self int32, attemptsLeft uint32, ch *Choice) bool {
	if !t.harder(tp, self, attemptsLeft) {
		return t.used(tp, self)
	}
	v, ok := t.hash(tp.proto).get(tp.invert().pack())
	if !ok {
		return false
	}
	other := v >> 1
	if v&1 == dirOriginal || other == self {
		return true
	}
	o := &t.conns[other]
	if o.state < TimeWait || !o.srcNAT {
		return true
	}
	if int32(t.conns[self].tdEnd-o.tdEnd) <= 0 { // nf_seq_has_advanced
		return true
	}
	t.destroy(other)
	t.stats.Evicted++
	ch.Evicted++
	return false
}

// harder reports whether usedHarder may evict for this try: 6.5+, a TCP
// SYN, in the last 32 tries of a round.
func (t *Table) harder(tp key, self int32, attemptsLeft uint32) bool {
	const harderThresh = 128 / 4
	return t.era.EvictTimeWait() && attemptsLeft <= harderThresh && tp.proto == TCP && t.conns[self].state == SynSent
}

// searchIndex is the port-space index a search answers its tries from,
// once its space is indexed (space.go).
type searchIndex struct {
	set  *portSet
	flow flowPorts
	run  int // taken tries in a row before the space was indexed
}

// start looks up the index of the space of tp's reply.
func (x *searchIndex) start(t *Table, tp key, self int32) {
	if x.set = t.spaceFor(tp.invert(), false); x.set != nil {
		x.flow = t.sameFlowPorts(self, spaceOf(tp.invert()))
	}
}

// bulkEnd returns the try of this round up to which the index may answer
// in bulk: none without an index or with a try callback, all but the last
// 32 on 6.5+ (where a try may evict), else all.
func (x *searchIndex) bulkEnd(t *Table, tp key, self int32, attempts uint32) uint32 {
	const harderThresh = 128 / 4
	switch {
	case x.set == nil || t.onTry != nil:
		return 0
	case !t.harder(tp, self, 0):
		return attempts
	case attempts > harderThresh:
		return attempts - harderThresh
	}
	return 0
}

// used answers one try: from the index when there is one and no eviction
// is possible, else as the kernel does; it indexes the space after
// indexAfter taken tries in a row.
func (x *searchIndex) used(t *Table, tp key, self int32, attemptsLeft uint32, ch *Choice) bool {
	if x.set != nil && t.onTry == nil && !t.harder(tp, self, attemptsLeft) {
		return t.usedIn(x.set, tp, x.flow)
	}
	taken := t.usedHarder(tp, self, attemptsLeft, ch)
	if !taken || x.set != nil {
		x.run = 0
		return taken
	}
	if x.run++; x.run >= indexAfter && t.onTry == nil {
		x.set = t.spaceFor(tp.invert(), true)
		x.flow = t.sameFlowPorts(self, spaceOf(tp.invert()))
	}
	return taken
}

func inRange(tp key, r *rng) bool {
	if r.flags&MapIPs != 0 && (tp.src() < r.minIP || tp.src() > r.maxIP) {
		return false
	}
	if r.flags&ProtoSpecified == 0 {
		return true
	}
	return tp.sport() >= r.minPort && tp.sport() <= r.maxPort
}

// uniqueTuple is get_unique_tuple for NF_NAT_MANIP_SRC of the current
// tuple orig: the original tuple with the destination DNAT gave it.
func (t *Table) uniqueTuple(self int32, orig key, r *rng, ch *Choice) key {
	// 1) the original tuple, or an existing mapping of this source.
	if r.flags&RandomAll == 0 {
		if inRange(orig, r) {
			if !t.used(orig, self) {
				ch.Step = StepOriginal
				return orig
			}
		} else if res, ok := t.findAppropriateSrc(orig, r); ok {
			if !t.used(res, self) {
				ch.Step = StepBySource
				return res
			}
		}
	}
	// 2) the address.
	tp := orig
	findBestIPs(&tp, r)
	// 3) keep the port if it is in range and unused.
	if r.flags&RandomAll == 0 {
		if r.flags&ProtoSpecified != 0 {
			if tp.sport() >= r.minPort && tp.sport() <= r.maxPort &&
				(r.minPort == r.maxPort || !t.used(tp, self)) {
				ch.Step = StepPreserve
				ch.Taken = r.minPort == r.maxPort && t.peekUsed(tp, self)
				return tp
			}
		} else if !t.used(tp, self) {
			ch.Step = StepPreserve
			return tp
		}
	}
	// 4) search.
	if t.era.Rover() {
		t.searchLegacy(&tp, self, r, ch)
	} else {
		t.search(&tp, self, r, ch)
	}
	return tp
}

// findAppropriateSrc walks the bysource list of orig's source, newest first,
// and returns the first existing mapping that is in range for r. With
// Config.OneFlowPerSource there is none to find.
func (t *Table) findAppropriateSrc(orig key, r *rng) (key, bool) {
	if t.noBysrc {
		return key{}, false
	}
	i, h, ok := t.bysrc.find(srcKey{orig.src(), orig.sport(), orig.proto}.pack())
	t.srcHint = srcHint{slot: i, h: h, found: ok, valid: true}
	if !ok {
		return key{}, false
	}
	if t.oneFlow {
		panic(fmt.Sprintf("natmodel: OneFlowPerSource: source %v:%d has entry %d of another flow", addr4(orig.src()), orig.sport(), t.bysrc.value(i)))
	}
	head := t.bysrc.value(i)
	for i := head; i >= 0; i = t.conns[i].next {
		res := t.conns[i].reply.invert()
		res.setDst(orig.dst(), orig.dport())
		if inRange(res, r) {
			return res, true
		}
	}
	return key{}, false
}

// findBestIPs is find_best_ips_proto for IPv4 source NAT.
func findBestIPs(tp *key, r *rng) {
	if r.flags&MapIPs == 0 {
		return
	}
	if r.minIP == r.maxIP {
		tp.setSrc(r.minIP)
		return
	}
	var initval uint32 // zone id 0
	if r.flags&Persistent == 0 {
		initval = raw32(tp.dst())
	}
	j := jhashAddr(raw32(tp.src()), initval)
	dist := r.maxIP - r.minIP + 1
	tp.setSrc(r.minIP + reciprocalScale(j, dist))
}

// portRange returns the search range: the port class of the original port
// when the rule gives no ports, else the rule's range.
func portRange(sport uint16, r *rng) (min, size uint32) {
	if r.flags&ProtoSpecified == 0 {
		switch {
		case sport < 512:
			return 1, 511
		case sport < 1024:
			return 600, 1023 - 600 + 1
		default:
			return 1024, 65535 - 1024 + 1
		}
	}
	lo, hi := uint32(r.minPort), uint32(r.maxPort)
	if hi < lo {
		lo, hi = hi, lo
	}
	return lo, hi - lo + 1
}

// search is nf_nat_l4proto_unique_tuple since 5.0: a random u16 offset
// (wrapping at 65536), min(range, 128) consecutive tries, then rounds of half
// as many from a new random offset while attempts >= 16; the last tried port
// is kept when all fail.
func (t *Table) search(tp *key, self int32, r *rng, ch *Choice) {
	const maxAttempts = 128
	min, size := portRange(tp.sport(), r)
	off := uint16(t.rnd.Uint32())
	attempts := size
	if attempts > maxAttempts {
		attempts = maxAttempts
	}
	ch.Rounds = 1
	var x searchIndex
	x.start(t, *tp, self)
	if x.full(t, *tp, self, min, size) {
		t.exhausted(tp, min, size, off, attempts, ch)
		return
	}
	for {
		if _, found := t.round(tp, self, min, size, off, attempts, &x, ch); found {
			ch.Step = StepSearch
			return
		}
		if attempts >= size || attempts < 16 {
			ch.Step = StepExhausted
			ch.Taken = true
			return
		}
		attempts /= 2
		off = uint16(t.rnd.Uint32())
		ch.Rounds++
	}
}

// full reports whether the index says every try of every round of a
// search is taken, as the rounds themselves would find one by one: the
// space is indexed and full, no port is the flow's own, and no try may
// evict or be traced.
func (x *searchIndex) full(t *Table, tp key, self int32, min, size uint32) bool {
	return x.set != nil && x.flow == noFlowPorts && t.onTry == nil && !t.harder(tp, self, 0) && x.set.allTaken(min, size)
}

// exhausted is search's rounds on a full space (searchIndex.full): each
// round's offset drawn as the kernel draws it, every try taken and
// counted, the last round's last port kept — what round reports round
// by round, at the cost of the draws.
func (t *Table) exhausted(tp *key, min, size uint32, off uint16, attempts uint32, ch *Choice) {
	for {
		ch.Tries += int(attempts)
		ch.Work += 2
		t.stats.Found += uint64(attempts)
		if attempts >= size || attempts < 16 {
			if attempts > 0 {
				tp.setSport(uint16(min + uint32(off+uint16(attempts-1))%size))
			}
			ch.Step, ch.Taken = StepExhausted, true
			return
		}
		attempts /= 2
		off = uint16(t.rnd.Uint32())
		ch.Rounds++
	}
}

// round runs one round of a search: attempts tries of consecutive ports
// from off. It returns the try that found a free port, or attempts; tp
// holds the port of the last try either way. Tries the index can answer are
// answered in bulk (scan); the others, one by one as the kernel makes them.
func (t *Table) round(tp *key, self int32, min, size uint32, off uint16, attempts uint32, x *searchIndex, ch *Choice) (uint32, bool) {
	port := func(i uint32) uint16 { return uint16(min + uint32(off+uint16(i))%size) }
	for i := uint32(0); i < attempts; {
		if bulk := x.bulkEnd(t, *tp, self, attempts); i < bulk {
			read := x.set.reads
			j := t.scan(x.set, min, size, off, i, bulk, x.flow)
			ch.Tries += int(j - i)
			ch.Work += int(x.set.reads-read) + 2
			if j < bulk {
				ch.Tries++
				tp.setSport(port(j))
				return j, true
			}
			i = j
			continue
		}
		tp.setSport(port(i))
		ch.Tries++
		ch.Work++
		taken := x.used(t, *tp, self, attempts-i, ch)
		if t.onTry != nil {
			t.onTry(tp.sport(), taken)
		}
		if !taken {
			return i, true
		}
		i++
	}
	if attempts > 0 {
		tp.setSport(port(attempts - 1))
	}
	return attempts, false
}

// searchLegacy is nf_nat_l4proto_unique_tuple before 5.0: start at the keyed
// hash of (nat ip, dst ip, dst port) for random, a fresh random u16 for
// fully-random, else the global per-protocol rover; scan the whole range and
// return the last candidate even if taken; plain mode stores the rover.
func (t *Table) searchLegacy(tp *key, self int32, r *rng, ch *Choice) {
	min, size := portRange(tp.sport(), r)
	rover := &t.rover[0]
	if tp.proto == UDP {
		rover = &t.rover[1]
	}
	var off uint16
	switch {
	case r.flags&ProtoRandom != 0:
		off = uint16(mix64(t.secret ^ uint64(tp.src())<<32 ^ uint64(tp.dst()) ^ uint64(tp.dport())<<17))
	case r.flags&ProtoRandomFully != 0:
		off = uint16(t.rnd.Uint32())
	default:
		off = *rover
	}
	ch.Rounds = 1
	var x searchIndex
	x.start(t, *tp, self)
	// Every candidate but the last is tested; the last is returned even
	// when taken.
	j, found := t.round(tp, self, min, size, off, size-1, &x, ch)
	if !found {
		tp.setSport(uint16(min + uint32(off+uint16(j))%size))
		ch.Tries++
		if t.onTry != nil {
			t.onTry(tp.sport(), t.peekUsed(*tp, self))
		}
	}
	if r.flags&RandomAll == 0 {
		*rover = off + uint16(j)
	}
	ch.Step = StepSearch
	if !found && x.peek(t, *tp, self) {
		ch.Step = StepExhausted
		ch.Taken = true
	}
}

// peek is peekUsed, answered by the index when the search has one (an
// exhausted legacy search ends with it, and the lookup of a taken tuple
// reads its entry: a cache miss). With Config.Verify the hash is asked
// too, and a different answer panics.
func (x *searchIndex) peek(t *Table, tp key, self int32) bool {
	if x.set == nil || t.onTry != nil {
		return t.peekUsed(tp, self)
	}
	taken := x.set.has(tp.sport())
	if t.verify && taken != t.peekUsed(tp, self) {
		panic(fmt.Sprintf("natmodel: the index says port %d of %v is taken=%v, the hash says otherwise", tp.sport(), tp.tuple(), taken))
	}
	return taken
}
