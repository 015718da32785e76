package natmodel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/snatrace/snatrace/internal/hugepage"
)

// State is the conntrack TCP state of an entry, in the kernel's enum order
// (enum tcp_conntrack): only the order matters to the model.
type State uint8

// Conntrack states the model distinguishes. UDP entries stay in StateNone.
const (
	StateNone State = iota
	SynSent
	Established
	TimeWait
	Close
)

func (s State) String() string {
	switch s {
	case StateNone:
		return "none"
	case SynSent:
		return "SYN_SENT"
	case Established:
		return "ESTABLISHED"
	case TimeWait:
		return "TIME_WAIT"
	case Close:
		return "CLOSE"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Verdict is the outcome of Confirm for the packet being confirmed.
type Verdict uint8

// Confirm verdicts.
const (
	// Accepted: the entry is now in the table.
	Accepted Verdict = iota + 1
	// Dropped: the entry clashed with a confirmed one and the packet is
	// dropped (insert_failed, drop). The entry is destroyed.
	Dropped
	// Merged: a UDP clash resolved by attaching the packet to the winning
	// entry; the loser entry is destroyed.
	Merged
	// ClashInserted: a UDP clash in the original direction only, resolved by
	// inserting the loser's reply direction with a 1 s timeout (5.6+). The
	// entry stays; the caller should destroy it after 1 s.
	ClashInserted
)

func (v Verdict) String() string {
	switch v {
	case Accepted:
		return "accepted"
	case Dropped:
		return "dropped"
	case Merged:
		return "merged"
	case ClashInserted:
		return "clash-inserted"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Stats are the conntrack statistics counters the model keeps, summed over
// CPUs, with the meaning of the Table's era (KERNEL.md §4): before 5.10
// InsertFailed also counts resolved UDP clashes and ClashResolve stays 0.
type Stats struct {
	Found        uint64 `json:"found"`
	Insert       uint64 `json:"insert"`
	InsertFailed uint64 `json:"insert_failed"`
	Drop         uint64 `json:"drop"`
	ClashResolve uint64 `json:"clash_resolve"`
	// Evicted counts TIME_WAIT entries killed by nf_nat_used_tuple_harder
	// (6.5+); the kernel has no counter for it.
	Evicted uint64 `json:"evicted"`
}

// ConnID names an entry of a Table. IDs are not reused: an ID of a destroyed
// entry is stale and every method treats it as unknown.
type ConnID uint64

// ErrUnknownConn reports a stale or foreign ConnID.
var ErrUnknownConn = errors.New("unknown conntrack entry")

// ErrExists reports a new connection whose original tuple belongs to a live
// confirmed entry (the packet would not create a new entry in the kernel).
var ErrExists = errors.New("tuple belongs to a live conntrack entry")

// Config configures a Table.
type Config struct {
	// Era selects the kernel behaviour. The zero Era is rejected.
	Era Era
	// Rand is the source of every random draw (get_random_u16, prandom_u32,
	// the boot-time hash secrets). Required.
	Rand *rand.Rand
	// OnTry, if set, is called for every port the port search tests, with
	// whether it was taken: a trace for tests and teaching.
	OnTry func(port uint16, taken bool)
	// SizeHint, if > 0, is the number of entries expected at once: the
	// tables are allocated for it up front.
	SizeHint int
	// Verify makes the table check what its callers promise (NewConnFresh,
	// OneFlowPerSource) with the lookups the promise saves, and panic when
	// a promise is false. For tests: it costs what the promise saves.
	Verify bool
	// OneFlowPerSource promises that entries whose original tuples share
	// a source address and port are of one flow (every source talks to
	// one destination: a simulation with one server). find_appropriate_src
	// can then find only an entry of the SYN's own flow, and there is
	// none: a closing one NewConn kills, a live one would hold the tuple
	// (ErrExists). The table then keeps no bysource hash — on an exhausted
	// node a cache miss per SYN, for lookups that cannot find anything —
	// and every result is as with it.
	OneFlowPerSource bool
}

// Table is one network namespace's conntrack hash plus the NAT bysource hash.
// It is not safe for concurrent use.
type Table struct {
	era    Era
	rnd    *rand.Rand
	onTry  func(uint16, bool)
	verify bool
	secret uint64
	now    time.Duration

	conns  []conn
	free   []int32
	hashes [2]hmap // confirmed tuples, both directions: idx<<1 | dir; tcp, udp
	bysrc  hmap    // head of the bysource list of each original source (srcKey)
	// oneFlow: Config.OneFlowPerSource; noBysrc: the bysource hash is not
	// kept (OneFlowPerSource without Verify).
	oneFlow, noBysrc bool
	rover            [2]uint16 // legacy per-protocol port rovers: tcp, udp
	// srcHint is where findAppropriateSrc found (or would put) the
	// source of the entry being SNATed, for bysrcAdd; valid until the
	// bysource hash changes.
	srcHint srcHint
	stats   Stats
	live    int
	// spaces indexes the port spaces searches found full (space.go).
	spaces    map[spaceKey]*portSet
	lastSpace lastSpace
}

type srcHint struct {
	slot         uint64
	h            uint32
	found, valid bool
}

type srcKey struct {
	ip    uint32
	port  uint16
	proto Proto
}

type conn struct {
	orig, reply key
	gen         uint32
	state       State
	inUse       bool
	confirmed   bool
	natDone     bool // IPS_SRC_NAT_DONE: in the bysource hash (unless Table.noBysrc)
	srcNAT      bool // IPS_SRC_NAT: the tuple was changed
	fresh       bool // NewConnFresh: no entry holds orig until this one is confirmed
	fakeOrig    bool // inserted by clash resolution with the reply direction only
	isn, tdEnd  uint32
	prev, next  int32 // bysource list links, -1 at the ends
}

const (
	dirOriginal = 0
	dirReply    = 1
)

// NewTable returns an empty table for cfg.
func NewTable(cfg Config) (*Table, error) {
	if cfg.Rand == nil {
		return nil, errors.New("creating conntrack table: Config.Rand is required")
	}
	if cfg.Era == (Era{}) {
		return nil, errors.New("creating conntrack table: Config.Era is required")
	}
	t := &Table{
		era:     cfg.Era,
		rnd:     cfg.Rand,
		onTry:   cfg.OnTry,
		verify:  cfg.Verify,
		oneFlow: cfg.OneFlowPerSource,
		noBysrc: cfg.OneFlowPerSource && !cfg.Verify,
	}
	t.hashes = [2]hmap{newTableHmap(t, kindCT), newTableHmap(t, kindCT)}
	t.bysrc = newTableHmap(t, kindSrc)
	if n := cfg.SizeHint; n > 0 {
		n = min(n, 1<<24)
		t.conns = make([]conn, 0, n)
		hugepage.Slice(t.conns)
		t.hashes[0].presize(2 * n)
		if !t.noBysrc {
			t.bysrc.presize(n)
		}
	}
	t.secret = t.rnd.Uint64()
	if t.era.Rover() {
		// The rovers start at 0 at boot; after a while they are anywhere.
		t.rover = [2]uint16{uint16(t.rnd.Uint32()), uint16(t.rnd.Uint32())}
	}
	return t, nil
}

func (t *Table) hash(p Proto) *hmap {
	if p == UDP {
		return &t.hashes[1]
	}
	return &t.hashes[0]
}

// Era returns the table's kernel era.
func (t *Table) Era() Era { return t.era }

// SetTime sets the virtual clock (used for TCP initial sequence numbers, as
// the kernel's secure_tcp_seq mixes in the time).
func (t *Table) SetTime(now time.Duration) { t.now = now }

// Stats returns the counters so far.
func (t *Table) Stats() Stats { return t.stats }

// Len returns the number of confirmed entries.
func (t *Table) Len() int { return t.live }

// Live reports whether id names an entry that still exists.
func (t *Table) Live(id ConnID) bool {
	_, ok := t.get(id)
	return ok
}

func (t *Table) get(id ConnID) (int32, bool) {
	idx := int64(uint32(id)) - 1
	if idx < 0 || idx >= int64(len(t.conns)) {
		return 0, false
	}
	c := &t.conns[idx]
	if !c.inUse || c.gen != uint32(id>>32) {
		return 0, false
	}
	return int32(idx), true
}

func (t *Table) id(idx int32) ConnID {
	return ConnID(uint64(t.conns[idx].gen)<<32 | uint64(idx+1))
}

// NewConn creates the unconfirmed entry for the first packet of a flow with
// original tuple orig (resolve_normal_ct). A TCP SYN whose tuple belongs to a
// confirmed entry in TIME_WAIT or CLOSE reopens it: the old entry is killed
// first, as nf_conntrack_proto_tcp does.
func (t *Table) NewConn(orig Tuple) (ConnID, error) {
	return t.newConn(orig, false)
}

// NewConnFresh is NewConn for a tuple the caller knows no entry holds, in
// either direction, now or before this entry is confirmed or destroyed: a
// retransmitted SYN whose previous entry was dropped at confirm, while its
// socket keeps the source port so that no other flow can take the tuple.
// It skips the lookups of the tuple that NewConn and the 5.0+ search
// (same-flow ports) would make, each a cache miss on a large table; the
// entry, and every result after it, are NewConn's. Config.Verify checks
// the promise.
func (t *Table) NewConnFresh(orig Tuple) (ConnID, error) {
	return t.newConn(orig, true)
}

func (t *Table) newConn(orig Tuple, fresh bool) (ConnID, error) {
	k, err := orig.key()
	if err != nil {
		return 0, fmt.Errorf("creating conntrack entry: %w", err)
	}
	if k.sport() == 0 || k.dport() == 0 {
		return 0, fmt.Errorf("creating conntrack entry for %v: port 0", orig)
	}
	if !fresh || t.verify {
		if err := t.reopen(k, fresh); err != nil {
			return 0, fmt.Errorf("creating conntrack entry for %v: %w", orig, err)
		}
	}
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.conns = append(t.conns, conn{})
		idx = int32(len(t.conns) - 1)
	}
	c := &t.conns[idx]
	gen := c.gen + 1
	*c = conn{} // then field by field: a composite literal is built on the stack and copied
	c.orig, c.reply, c.gen, c.inUse, c.prev, c.next = k, k.invert(), gen, true, -1, -1
	c.fresh = fresh
	if k.proto == TCP {
		c.state = SynSent
		c.isn = t.isn(k)
		c.tdEnd = c.isn + 1 // the SYN takes one sequence number
	}
	return t.id(idx), nil
}

// reopen looks tuple k up: a closing TCP entry with it as its original
// tuple is killed, any other entry holding it is ErrExists. With fresh
// (the caller promised no entry holds k) finding one is a broken promise.
func (t *Table) reopen(k key, fresh bool) error {
	v, ok := t.hash(k.proto).get(k.pack())
	switch {
	case !ok:
		return nil
	case fresh:
		panic(fmt.Sprintf("natmodel: NewConnFresh: tuple %v is held by entry %d", k.tuple(), v>>1))
	case v&1 == dirOriginal && k.proto == TCP && t.conns[v>>1].state >= TimeWait:
		t.destroy(v >> 1)
		return nil
	}
	return ErrExists
}

// isn models secure_tcp_seq: a keyed hash of the 4-tuple plus the clock in
// 64 ns units, so one 4-tuple's ISNs grow with time.
func (t *Table) isn(k key) uint32 {
	h := mix64(t.secret ^ uint64(k.src())<<32 ^ uint64(k.dst()) ^ uint64(k.sport())<<48 ^ uint64(k.dport())<<16)
	return uint32(h) + uint32(t.now.Nanoseconds()>>6)
}

// SetState moves a TCP entry to state s. TIME_WAIT and CLOSE record the FIN
// in the entry's sequence space, which nf_nat_used_tuple_harder compares.
func (t *Table) SetState(id ConnID, s State) error {
	idx, ok := t.get(id)
	if !ok {
		return ErrUnknownConn
	}
	c := &t.conns[idx]
	c.state = s
	if s >= TimeWait && c.orig.proto == TCP {
		c.tdEnd = c.isn + 2
	}
	return nil
}

// Destroy removes an entry (timeout, kill): from the conntrack hash if it was
// confirmed and from the bysource hash. It reports false for a stale id.
func (t *Table) Destroy(id ConnID) bool {
	idx, ok := t.get(id)
	if !ok {
		return false
	}
	t.destroy(idx)
	return true
}

func (t *Table) destroy(idx int32) {
	c := &t.conns[idx]
	if c.confirmed {
		h := t.hash(c.orig.proto)
		if !c.fakeOrig {
			a, b := c.orig.pack()
			h.delVal(a, b, idx<<1|dirOriginal)
			t.indexed(c.orig, false)
		}
		a, b := c.reply.pack()
		h.delVal(a, b, idx<<1|dirReply)
		t.indexed(c.reply, false)
		t.live--
	}
	if c.natDone {
		t.bysrcRemove(idx)
	}
	c.inUse = false
	c.confirmed = false
	t.free = append(t.free, idx)
}

func (t *Table) bysrcAdd(idx int32) {
	c := &t.conns[idx]
	if t.noBysrc {
		c.prev, c.next, c.natDone = -1, -1, true
		return
	}
	sk := srcKey{c.orig.src(), c.orig.sport(), c.orig.proto}
	c.prev = -1
	var i uint64
	var hs uint32
	var found bool
	if t.srcHint.valid {
		i, hs, found = t.srcHint.slot, t.srcHint.h, t.srcHint.found
		t.srcHint.valid = false
	} else {
		t.bysrc.reserve(1)
		i, hs, found = t.bysrc.find(sk.pack())
	}
	if found {
		head := t.bysrc.value(i)
		c.next = head
		t.conns[head].prev = idx
		t.bysrc.slots[i].v1 = idx + 1
	} else {
		c.next = -1
		t.bysrc.putAt(i, hs, idx)
	}
	c.natDone = true
}

func (t *Table) bysrcRemove(idx int32) {
	t.srcHint.valid = false
	c := &t.conns[idx]
	if t.noBysrc {
		c.natDone = false
		return
	}
	if c.prev >= 0 {
		t.conns[c.prev].next = c.next
	} else {
		sk := srcKey{c.orig.src(), c.orig.sport(), c.orig.proto}
		a, b := sk.pack()
		i, ok := t.bysrc.slotOf(a, b, idx)
		switch {
		case ok && c.next >= 0:
			t.bysrc.slots[i].v1 = c.next + 1
		case ok:
			t.bysrc.delAt(i)
		case c.next >= 0: // the head is always in the hash; kept for safety
			t.bysrc.put(a, b, c.next)
		}
	}
	if c.next >= 0 {
		t.conns[c.next].prev = c.prev
	}
	c.prev, c.next = -1, -1
	c.natDone = false
}

// ConnInfo describes an entry.
type ConnInfo struct {
	Orig, Reply Tuple
	State       State
	Confirmed   bool
	SrcNAT      bool
}

// Conn returns what the table holds for id.
func (t *Table) Conn(id ConnID) (ConnInfo, bool) {
	idx, ok := t.get(id)
	if !ok {
		return ConnInfo{}, false
	}
	c := &t.conns[idx]
	return ConnInfo{Orig: c.orig.tuple(), Reply: c.reply.tuple(), State: c.state, Confirmed: c.confirmed, SrcNAT: c.srcNAT}, true
}

// Lookup returns the confirmed entry that has tuple tp in either direction,
// and whether tp is its reply direction.
func (t *Table) Lookup(tp Tuple) (id ConnID, reply bool, ok bool) {
	k, err := tp.key()
	if err != nil {
		return 0, false, false
	}
	v, ok := t.hash(k.proto).get(k.pack())
	if !ok {
		return 0, false, false
	}
	return t.id(v >> 1), v&1 == dirReply, true
}

// Confirm is __nf_conntrack_confirm for the entry's first packet: it inserts
// both directions unless one clashes with a confirmed entry, and then applies
// the era's clash resolution (TCP: never) and counters.
func (t *Table) Confirm(id ConnID) (Verdict, error) {
	idx, ok := t.get(id)
	if !ok {
		return 0, ErrUnknownConn
	}
	c := &t.conns[idx]
	if c.confirmed {
		return Accepted, nil
	}
	oa, ob := c.orig.pack()
	ra, rb := c.reply.pack()
	h := t.hash(c.orig.proto)
	h.reserve(2)
	if c.orig.proto == TCP {
		// A taken reply (the index says so without reading the winner) is
		// a TCP clash, dropped in either direction: the original direction
		// need not be looked up first. UDP clashes are resolved below.
		if s := t.indexOf(c.reply); s != nil && s.has(c.reply.dport()) {
			return t.dropped(idx), nil
		}
	}
	var v int32
	oi, oh, clash := h.find(oa, ob)
	if clash {
		v = h.value(oi)
	} else if ri, rh, found := h.find(ra, rb); found {
		v, clash = h.value(ri), true
	} else {
		h.putAt(oi, oh, idx<<1)
		if ri == oi { // both wanted the same empty slot: look again
			ri, _, _ = h.find(ra, rb)
		}
		h.putAt(ri, rh, idx<<1|dirReply)
		t.indexed(c.orig, true)
		t.indexed(c.reply, true)
		c.confirmed = true
		t.live++
		if t.era.CountsInsert() {
			t.stats.Insert++
		}
		return Accepted, nil
	}
	verdict := t.resolveClash(idx, v>>1)
	switch verdict {
	case Dropped:
		return t.dropped(idx), nil
	default:
		if t.era.ClashResolveCounter() {
			t.stats.ClashResolve++
		} else {
			t.stats.InsertFailed++
		}
	}
	if verdict != ClashInserted {
		t.destroy(idx)
	}
	return verdict, nil
}

// dropped counts an unresolved clash and destroys the loser entry.
func (t *Table) dropped(idx int32) Verdict {
	t.stats.InsertFailed++
	t.stats.Drop++
	t.destroy(idx)
	return Dropped
}

// resolveClash is nf_ct_resolve_clash for loser against the confirmed winner.
// Per era: no resolution before 4.6; merge when the winner was not NATed
// (4.6), or when both entries match both ways (4.19); the loser inserted in
// its reply direction only when that direction is free (5.6); from 6.12
// merge only matching entries, or entries matching with directions
// swapped. A clash in the reply direction between different flows (two
// pods SNATed onto one port) is dropped in every era.
func (t *Table) resolveClash(loser, winner int32) Verdict {
	l, w := &t.conns[loser], &t.conns[winner]
	if l.orig.proto != UDP || !t.era.ClashMerge() { // allow_clash is unset for TCP in every kernel
		return Dropped
	}
	match := w.orig == l.orig && w.reply == l.reply
	switch {
	case t.era.MergeReverse():
		if match || (w.orig == l.reply && w.reply == l.orig) {
			return Merged
		}
	case !w.natDone || (t.era.MatchMerge() && match):
		return Merged
	}
	if t.era.ResolveHarder() {
		ra, rb := l.reply.pack()
		if _, taken := t.hash(UDP).get(ra, rb); !taken {
			t.hash(UDP).put(ra, rb, loser<<1|dirReply)
			t.indexed(l.reply, true)
			l.confirmed = true
			l.fakeOrig = true
			t.live++
			return ClashInserted
		}
	}
	return Dropped
}

// SourceOf returns the source address and port an entry was given by SNAT
// (the inverse of its reply tuple).
func (t *Table) SourceOf(id ConnID) (netip.AddrPort, bool) {
	idx, ok := t.get(id)
	if !ok {
		return netip.AddrPort{}, false
	}
	r := t.conns[idx].reply
	return netip.AddrPortFrom(addr4(r.dst()), r.dport()), true
}
