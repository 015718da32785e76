package natmodel

import (
	"net/netip"
	"testing"
)

// masquerade: the pod's port is kept when the reply tuple is free.
func TestPortPreservation(t *testing.T) {
	for _, era := range []Era{Legacy, Era50, Era65} {
		tb, s := newTable(t, era)
		id, ch := connect(t, tb, TCP, pod(1, 40000), dst1, masq(0, 0, 0))
		if ch.Step != StepPreserve || ch.Source != netip.AddrPortFrom(natIP, 40000) || ch.Tries != 0 {
			t.Errorf("%v: got %+v, want 192.0.2.1:40000 by preservation", era, ch)
		}
		if confirm(t, tb, id) != Accepted {
			t.Errorf("%v: not accepted", era)
		}
		if s.used != s.bootDraws(era) {
			t.Errorf("%v: preservation drew %d random numbers", era, s.used-s.bootDraws(era))
		}
	}
}

func (s *script) bootDraws(era Era) int {
	if era.Rover() {
		return 3
	}
	return 1
}

// The race (KERNEL.md §1): two pods, same port, same destination, both NATed
// before either confirms: both keep the port, the second confirm drops.
func TestRaceSamePortBothPreserve(t *testing.T) {
	for _, era := range []Era{Legacy, Era50, {5, 10}, Era65} {
		tb, _ := newTable(t, era)
		a, cha := connect(t, tb, TCP, pod(1, 40000), dst1, masq(0, 0, 0))
		b, chb := connect(t, tb, TCP, pod(2, 40000), dst1, masq(0, 0, 0))
		if cha.Source != chb.Source || cha.Step != StepPreserve || chb.Step != StepPreserve {
			t.Fatalf("%v: sources %v %v, steps %v %v", era, cha.Source, chb.Source, cha.Step, chb.Step)
		}
		if v := confirm(t, tb, a); v != Accepted {
			t.Fatalf("%v: first confirm %v", era, v)
		}
		if v := confirm(t, tb, b); v != Dropped {
			t.Fatalf("%v: second confirm %v, want dropped", era, v)
		}
		st := tb.Stats()
		if st.InsertFailed != 1 || st.Drop != 1 || st.ClashResolve != 0 {
			t.Errorf("%v: stats %+v", era, st)
		}
		if _, ok := tb.Conn(b); ok {
			t.Errorf("%v: loser entry still exists", era)
		}
		if tb.Len() != 1 {
			t.Errorf("%v: %d confirmed entries, want 1", era, tb.Len())
		}
	}
}

// Without overlap there is no race: the second sees the first confirmed and
// searches from the random offset (5.0+).
func TestSequentialSearchesFromRandomOffset(t *testing.T) {
	tb, _ := newTable(t, Era50, 0)
	occupy(t, tb, 1, 40000, dst1, masq(0, 0, 0))
	_, ch := connect(t, tb, TCP, pod(2, 40000), dst1, masq(0, 0, 0))
	if ch.Step != StepSearch || ch.Source.Port() != 1024 || ch.Tries != 1 || ch.Rounds != 1 {
		t.Errorf("got %+v, want port 1024 after 1 try", ch)
	}
	// found counts nf_conntrack_tuple_taken hits: the preservation check only.
	if tb.Stats().Found != 1 {
		t.Errorf("found = %d, want 1", tb.Stats().Found)
	}
}

// The u16 offset wraps at 65536: off 65535 gives port 1024+65535%64512 = 2047,
// the next try (off 0) gives 1024, not 2048.
func TestOffsetWrap(t *testing.T) {
	var tried []uint16
	tb, _ := newTable(t, Era50, 65535)
	tb.onTry = func(p uint16, taken bool) { tried = append(tried, p) }
	occupy(t, tb, 1, 40000, dst1, masq(0, 0, 0))
	occupy(t, tb, 2, 2047, dst1, masq(0, 0, 0))
	_, ch := connect(t, tb, TCP, pod(3, 40000), dst1, masq(0, 0, 0))
	if ch.Source.Port() != 1024 || ch.Tries != 2 {
		t.Errorf("got %+v, want 1024 after 2 tries", ch)
	}
	if len(tried) != 2 || tried[0] != 2047 || tried[1] != 1024 {
		t.Errorf("tried %v, want [2047 1024]", tried)
	}
}

// Port classes without --to-ports: <512 -> [1,511], 512..1023 -> [600,1023],
// >=1024 -> [1024,65535].
func TestPortClasses(t *testing.T) {
	for _, tc := range []struct {
		sport, off, want uint16
	}{
		{100, 0, 1},       // 1 + 0 % 511
		{511, 510, 511},   // 1 + 510 % 511
		{511, 511, 1},     // wraps within the class
		{512, 0, 600},     // 512 is in the 600..1023 class
		{700, 424, 600},   // 600 + 424 % 424
		{1023, 423, 1023}, // top of the class
		{1024, 64512, 1024},
		{40000, 39000, 40024},
	} {
		tb, _ := newTable(t, Era50, uint32(tc.off))
		// fully-random skips preservation: the search runs at once.
		_, ch := connect(t, tb, TCP, pod(1, tc.sport), dst1, masq(ProtoRandomFully, 0, 0))
		if ch.Source.Port() != tc.want || ch.Step != StepSearch {
			t.Errorf("sport %d off %d: got %v (%v), want %d", tc.sport, tc.off, ch.Source.Port(), ch.Step, tc.want)
		}
	}
}

// With the 64512-port class, offsets 64512..65535 map onto the first 1024
// ports again: those ports are twice as likely.
func TestWrapBiasCounts(t *testing.T) {
	min, size := portRange(40000, &rng{})
	hits := make(map[uint16]int)
	for off := 0; off < 65536; off++ {
		hits[uint16(min+uint32(off)%size)]++
	}
	if hits[1024] != 2 || hits[2047] != 2 || hits[2048] != 1 || hits[65535] != 1 {
		t.Errorf("hits 1024=%d 2047=%d 2048=%d 65535=%d", hits[1024], hits[2047], hits[2048], hits[65535])
	}
}

// fill confirms connections holding every port in [lo, hi] towards dst.
func fill(t *testing.T, tb *Table, lo, hi uint16, dst netip.AddrPort) []ConnID {
	t.Helper()
	var ids []ConnID
	for p := int(lo); p <= int(hi); p++ {
		ids = append(ids, occupy(t, tb, 1000+p, uint16(p), dst, masq(ProtoSpecified, lo, hi)))
	}
	return ids
}

// 128 attempts, halved while >= 16, four new offsets: 128+64+32+16+8 = 248
// tries, and the last tried port is kept.
func TestAttemptsHalving(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lo, hi     uint16
		tries      int
		rounds     int
		offs       []uint32
		wantSource uint16
	}{
		// 512 ports: 5 rounds; last round starts at off 100: 1024+(100+7)%512.
		{"512 ports", 1024, 1535, 248, 5, []uint32{0, 10, 20, 30, 100}, 1024 + 107},
		// 200 ports: still 128 first (128 < 200), then halving.
		{"200 ports", 2000, 2199, 248, 5, []uint32{0, 0, 0, 0, 195}, 2000 + (195+7)%200},
		// 100 ports: attempts = range size, one round, no retry.
		{"100 ports", 3000, 3099, 100, 1, []uint32{5}, 3000 + (5+99)%100},
		// 128 ports: one round of 128.
		{"128 ports", 4000, 4127, 128, 1, []uint32{0}, 4127},
		// 20 ports: one round.
		{"20 ports", 5000, 5019, 20, 1, []uint32{3}, 5000 + (3+19)%20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(t, Era50, tc.offs...)
			fill(t, tb, tc.lo, tc.hi, dst1)
			r := masq(ProtoSpecified|ProtoRandomFully, tc.lo, tc.hi)
			id, ch := connect(t, tb, TCP, pod(1, 40000), dst1, r)
			if ch.Tries != tc.tries || ch.Rounds != tc.rounds || ch.Step != StepExhausted || !ch.Taken {
				t.Errorf("got %+v, want %d tries in %d rounds, exhausted", ch, tc.tries, tc.rounds)
			}
			if ch.Source.Port() != tc.wantSource {
				t.Errorf("kept port %d, want %d (the last tried)", ch.Source.Port(), tc.wantSource)
			}
			if v := confirm(t, tb, id); v != Dropped {
				t.Errorf("confirm %v, want dropped", v)
			}
		})
	}
}

// A free port inside a later round is found there.
func TestSearchFindsFreePortInThirdRound(t *testing.T) {
	tb, _ := newTable(t, Era50, 0, 200, 300)
	ids := fill(t, tb, 1024, 1535, dst1)
	// free port 1024+300+5 (third round starts at off 300).
	tb.Destroy(ids[305])
	_, ch := connect(t, tb, TCP, pod(1, 40000), dst1, masq(ProtoSpecified|ProtoRandom, 1024, 1535))
	if ch.Step != StepSearch || ch.Source.Port() != 1329 || ch.Rounds != 3 || ch.Tries != 128+64+6 {
		t.Errorf("got %+v, want 1329 in round 3 after 198 tries", ch)
	}
}

// Single-port range: the port is returned even when taken (certain clash).
func TestSinglePortRange(t *testing.T) {
	r := masq(ProtoSpecified, 5000, 5000)
	for _, era := range []Era{Legacy, Era50, Era65} {
		tb, _ := newTable(t, era, 7, 7)
		a, _ := connect(t, tb, TCP, pod(1, 5000), dst1, r)
		confirm(t, tb, a)
		// same source port: step 3 returns it without checking.
		b, ch := connect(t, tb, TCP, pod(2, 5000), dst1, r)
		if ch.Step != StepPreserve || !ch.Taken || ch.Source.Port() != 5000 {
			t.Errorf("%v: got %+v, want 5000 kept though taken", era, ch)
		}
		if v := confirm(t, tb, b); v != Dropped {
			t.Errorf("%v: confirm %v", era, v)
		}
		// another source port: the search has one candidate and keeps it.
		c, ch := connect(t, tb, TCP, pod(3, 40000), dst1, r)
		if ch.Step != StepExhausted || ch.Tries != 1 || ch.Source.Port() != 5000 {
			t.Errorf("%v: got %+v, want 5000 after one try", era, ch)
		}
		if v := confirm(t, tb, c); v != Dropped {
			t.Errorf("%v: confirm %v", era, v)
		}
	}
}

// random and fully-random skip preservation (5.0+: both draw a random offset).
func TestRandomSkipsPreservation(t *testing.T) {
	for _, f := range []Flags{ProtoRandom, ProtoRandomFully, ProtoRandom | ProtoRandomFully} {
		tb, s := newTable(t, Era50, 5000)
		_, ch := connect(t, tb, TCP, pod(1, 40000), dst1, masq(f, 0, 0))
		if ch.Step != StepSearch || ch.Source.Port() != 1024+5000 {
			t.Errorf("flags %d: got %+v, want 6024", f, ch)
		}
		if s.used != 2 {
			t.Errorf("flags %d: %d draws, want boot + 1", f, s.used)
		}
	}
}

// bysource: a source already mapped (unconfirmed entries included) keeps its
// mapping for other destinations, even where its own port would be free.
func TestBySourceReuse(t *testing.T) {
	tb, _ := newTable(t, Era50, 100)
	occupy(t, tb, 2, 40000, dst1, masq(0, 0, 0))
	a, ch := connect(t, tb, TCP, pod(1, 40000), dst1, masq(0, 0, 0))
	if ch.Step != StepSearch || ch.Source.Port() != 1124 {
		t.Fatalf("first mapping %+v, want search to 1124", ch)
	}
	// a stays unconfirmed: the bysource hash already holds it.
	_, ch2 := connect(t, tb, TCP, pod(1, 40000), dst2, masq(0, 0, 0))
	if ch2.Step != StepBySource || ch2.Source.Port() != 1124 {
		t.Errorf("second mapping %+v, want bysource 1124", ch2)
	}
	// Once a is gone, the mapping is forgotten and the port preserved.
	tb.Destroy(a)
	_, ch3 := connect(t, tb, TCP, pod(1, 40000), netip.MustParseAddrPort("198.51.100.3:80"), masq(0, 0, 0))
	if ch3.Step != StepBySource || ch3.Source.Port() != 1124 {
		// the second entry (to dst2) still maps to 1124
		t.Errorf("third mapping %+v, want bysource 1124 from the dst2 entry", ch3)
	}
}

// bysource reuse is skipped when the reused tuple is taken: then preservation.
func TestBySourceTakenFallsThrough(t *testing.T) {
	tb, _ := newTable(t, Era50, 100)
	occupy(t, tb, 2, 40000, dst1, masq(0, 0, 0))
	a, _ := connect(t, tb, TCP, pod(1, 40000), dst1, masq(0, 0, 0)) // -> 1124
	confirm(t, tb, a)
	occupy(t, tb, 3, 1124, dst2, masq(0, 0, 0))
	_, ch := connect(t, tb, TCP, pod(1, 40000), dst2, masq(0, 0, 0))
	if ch.Step != StepPreserve || ch.Source.Port() != 40000 {
		t.Errorf("got %+v, want preservation of 40000", ch)
	}
}

// An original tuple already in range (the pod's address is in the SNAT range)
// is kept as is.
func TestOriginalInRange(t *testing.T) {
	tb, _ := newTable(t, Era50)
	r := &Range{Flags: MapIPs, MinAddr: netip.MustParseAddr("10.0.0.0"), MaxAddr: netip.MustParseAddr("10.0.0.255")}
	_, ch := connect(t, tb, TCP, pod(1, 40000), dst1, r)
	if ch.Step != StepOriginal || ch.Source != pod(1, 40000) {
		t.Errorf("got %+v", ch)
	}
}

// Multi-address SNAT: jhash2 over the 16-byte source address (the IPv4
// address and three zero words) with the destination as initval — 0 with
// persistent — scaled into the range. Expected values from the kernel's
// jhash2 and reciprocal_scale compiled in C; the 10.98.0.x rows are the lab's
// pods towards its server, whose clashes VALIDATION.md compares.
func TestMultiAddressJhash(t *testing.T) {
	for _, tc := range []struct {
		src, dst         string
		j, jp            uint32
		want4, wantPers4 string // snat to 192.0.2.1-192.0.2.4
	}{
		{"10.0.0.1", "198.51.100.1", 0x81109fce, 0x44dd116c, "192.0.2.3", "192.0.2.2"},
		{"10.0.0.1", "198.51.100.2", 0xd9cfa4a6, 0x44dd116c, "192.0.2.4", "192.0.2.2"},
		{"10.0.0.2", "198.51.100.1", 0x6f5d949a, 0xfa270fa5, "192.0.2.2", "192.0.2.4"},
		{"10.244.1.7", "198.51.100.1", 0x19827989, 0xb2abe721, "192.0.2.1", "192.0.2.3"},
		{"10.98.0.2", "198.51.100.2", 0x048f04f5, 0xfc148a36, "192.0.2.1", "192.0.2.4"},
		{"10.98.0.3", "198.51.100.2", 0x5fb0edc5, 0xf8c620da, "192.0.2.2", "192.0.2.4"},
		{"10.98.0.4", "198.51.100.2", 0x5f735ffb, 0x01194627, "192.0.2.2", "192.0.2.1"},
		{"10.98.0.5", "198.51.100.2", 0xb05d8506, 0x701231c9, "192.0.2.3", "192.0.2.2"},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		if j := jhashAddr(raw32(ip4(src)), raw32(ip4(dst))); j != tc.j {
			t.Errorf("jhash2(%s, %s) = %#x, want %#x", tc.src, tc.dst, j, tc.j)
		}
		if j := jhashAddr(raw32(ip4(src)), 0); j != tc.jp {
			t.Errorf("jhash2(%s, 0) = %#x, want %#x", tc.src, j, tc.jp)
		}
		for _, pers := range []bool{false, true} {
			tb, _ := newTable(t, Era50)
			r := &Range{Flags: MapIPs, MinAddr: netip.MustParseAddr("192.0.2.1"), MaxAddr: netip.MustParseAddr("192.0.2.4")}
			want := tc.want4
			if pers {
				r.Flags |= Persistent
				want = tc.wantPers4
			}
			_, ch := connect(t, tb, TCP, netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(dst, 80), r)
			if ch.Source.Addr().String() != want || ch.Source.Port() != 40000 {
				t.Errorf("%s -> %s persistent=%v: got %v, want %s:40000", tc.src, tc.dst, pers, ch.Source, want)
			}
		}
	}
}

// Legacy: plain mode searches from the global rover and stores it; two
// concurrent searches start at the same place and find the same port.
func TestLegacyRover(t *testing.T) {
	tb, _ := newTable(t, Legacy)
	tb.rover[0] = 500 // 1024 + 500
	occupy(t, tb, 1, 40000, dst1, masq(0, 0, 0))
	a, cha := connect(t, tb, TCP, pod(2, 40000), dst1, masq(0, 0, 0))
	b, chb := connect(t, tb, TCP, pod(3, 40000), dst1, masq(0, 0, 0))
	if cha.Source.Port() != 1524 || chb.Source.Port() != 1524 || tb.rover[0] != 500 {
		t.Fatalf("got %v %v rover %d, want both 1524 and rover 500", cha.Source, chb.Source, tb.rover[0])
	}
	confirm(t, tb, a)
	if v := confirm(t, tb, b); v != Dropped {
		t.Errorf("second confirm %v", v)
	}
	// Now 1524 is taken: the next search moves on and stores the rover.
	_, chc := connect(t, tb, TCP, pod(4, 40000), dst1, masq(0, 0, 0))
	if chc.Source.Port() != 1525 || tb.rover[0] != 501 || chc.Tries != 2 {
		t.Errorf("got %+v rover %d, want 1525 after 2 tries, rover 501", chc, tb.rover[0])
	}
}

// Legacy random: the keyed hash of (nat ip, dst ip, dst port) is the same for
// every flow to one destination, so concurrent flows pick the same port;
// another destination starts elsewhere.
func TestLegacyRandomKeyedHash(t *testing.T) {
	tb, s := newTable(t, Legacy)
	r := masq(ProtoRandom, 0, 0)
	a, cha := connect(t, tb, TCP, pod(1, 40000), dst1, r)
	_, chb := connect(t, tb, TCP, pod(2, 41000), dst1, r)
	if cha.Source != chb.Source {
		t.Errorf("same destination: %v vs %v, want equal", cha.Source, chb.Source)
	}
	confirm(t, tb, a)
	_, chc := connect(t, tb, TCP, pod(3, 42000), dst1, r)
	if chc.Source.Port() != cha.Source.Port()+1 && !(cha.Source.Port() == 65535 && chc.Source.Port() == 1024) {
		t.Errorf("after confirm: %v, want the next port after %v", chc.Source, cha.Source)
	}
	_, chd := connect(t, tb, TCP, pod(4, 40000), dst2, r)
	if chd.Source == cha.Source {
		t.Errorf("other destination got the same start %v", chd.Source)
	}
	if s.used != 3 {
		t.Errorf("random drew %d numbers after boot", s.used-3)
	}
}

// Legacy fully-random: a fresh draw per flow, full-range scan, last candidate
// returned even if taken.
func TestLegacyFullyRandomFullScan(t *testing.T) {
	tb, _ := newTable(t, Legacy, 0)
	fill(t, tb, 6000, 6299, dst1)
	_, ch := connect(t, tb, TCP, pod(1, 40000), dst1, masq(ProtoSpecified|ProtoRandomFully, 6000, 6299))
	if ch.Tries != 300 || ch.Step != StepExhausted || ch.Source.Port() != 6299 {
		t.Errorf("got %+v, want 300 tries, 6299 kept", ch)
	}
}

// 6.5: in the last 32 tries of a round a SNATed TIME_WAIT entry whose
// sequence numbers the new SYN has passed is evicted; 5.0 exhausts instead.
func TestTimeWaitEviction(t *testing.T) {
	for _, tc := range []struct {
		era   Era
		state State
		evict bool
	}{
		{Era65, TimeWait, true},
		{Era65, Close, true},
		{Era65, Established, false},
		{Era50, TimeWait, false},
	} {
		tb, _ := newTable(t, tc.era, 0, 0, 0, 0, 0)
		ids := fill(t, tb, 1024, 1151, dst1)
		for _, id := range ids {
			if err := tb.SetState(id, tc.state); err != nil {
				t.Fatal(err)
			}
		}
		tb.SetTime(1e9)
		_, ch := connect(t, tb, TCP, pod(1, 40000), dst1, masq(ProtoSpecified|ProtoRandomFully, 1024, 1151))
		if !tc.evict {
			if ch.Step != StepExhausted || ch.Evicted != 0 || ch.Tries != 128 {
				t.Errorf("%v %v: got %+v, want exhausted after 128", tc.era, tc.state, ch)
			}
			continue
		}
		// Only tries 97..128 may evict; the ISN comparison decides which.
		if ch.Step != StepSearch || ch.Evicted != 1 || ch.Tries < 97 || ch.Tries > 128 {
			t.Errorf("%v %v: got %+v, want an eviction in the last 32 tries", tc.era, tc.state, ch)
		}
		if got := int(ch.Source.Port()) - 1024; got != ch.Tries-1 {
			t.Errorf("evicted port %d is not the last tried", ch.Source.Port())
		}
		if tb.Stats().Evicted != 1 || tb.Len() != 127 {
			t.Errorf("stats %+v len %d", tb.Stats(), tb.Len())
		}
	}
}

// Entries that were not SNATed (tuple unchanged) are never evicted.
func TestTimeWaitEvictionNeedsSNAT(t *testing.T) {
	tb, _ := newTable(t, Era65, 0)
	// The node's own connections from natIP: already in range, not NATed.
	identity := &Range{Flags: MapIPs, MinAddr: natIP, MaxAddr: natIP}
	for p := 1024; p <= 1055; p++ {
		id, ch := connect(t, tb, TCP, netip.AddrPortFrom(natIP, uint16(p)), dst1, identity)
		if ch.Step != StepOriginal {
			t.Fatalf("setup: %+v", ch)
		}
		confirm(t, tb, id)
		tb.SetState(id, TimeWait)
	}
	tb.SetTime(1e9)
	r := &Range{Flags: MapIPs | ProtoSpecified | ProtoRandomFully, MinAddr: natIP, MaxAddr: natIP, MinPort: 1024, MaxPort: 1055}
	_, ch := connect(t, tb, TCP, pod(1, 40000), dst1, r)
	if ch.Evicted != 0 || ch.Step != StepExhausted {
		t.Errorf("got %+v, want no eviction of un-NATed entries", ch)
	}
}

// 6.5 eviction needs the new SYN to be past the old entry's sequence
// numbers (nf_seq_has_advanced), a TCP SYN_SENT entry, and a collision in
// the reply direction.
func TestTimeWaitEvictionConditions(t *testing.T) {
	for _, tc := range []string{"seq not advanced", "udp"} {
		tb, _ := newTable(t, Era65, 0)
		proto := TCP
		if tc == "udp" {
			proto = UDP
		}
		r := masq(ProtoSpecified, 1024, 1055)
		for p := 1024; p <= 1055; p++ {
			id, ch := connect(t, tb, proto, pod(1000+p, uint16(p)), dst1, r)
			if ch.Source.Port() != uint16(p) || confirm(t, tb, id) != Accepted {
				t.Fatalf("setup %d: %+v", p, ch)
			}
			tb.SetState(id, TimeWait)
		}
		id, err := tb.NewConn(Tuple{proto, pod(1, 40000), dst1})
		if err != nil {
			t.Fatal(err)
		}
		if tc == "seq not advanced" {
			idx, _ := tb.get(id)
			for i := range tb.conns {
				if tb.conns[i].inUse && int32(i) != idx {
					tb.conns[i].tdEnd = tb.conns[idx].tdEnd + 1000 // ahead of the new SYN
				}
			}
		}
		ch, _ := tb.SNAT(id, masq(ProtoSpecified|ProtoRandomFully, 1024, 1055))
		if ch.Evicted != 0 || ch.Step != StepExhausted || ch.Tries != 32 {
			t.Errorf("%s: %+v, want 32 tries and no eviction", tc, ch)
		}
	}
}

func TestRangeTuples(t *testing.T) {
	a1, a10 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.10")
	for _, tc := range []struct {
		r    Range
		want int
	}{
		{Masquerade(a1, 0, 0, 0), 64512},
		{Masquerade(a1, ProtoRandomFully, 20000, 20099), 100},
		{Range{Flags: MapIPs | ProtoSpecified, MinAddr: a1, MaxAddr: a10, MinPort: 2000, MaxPort: 2099}, 1000},
		{Range{Flags: MapIPs, MinAddr: a1, MaxAddr: a10}, 645120},
	} {
		if got := tc.r.Tuples(); got != tc.want {
			t.Errorf("%+v: %d tuples, want %d", tc.r, got, tc.want)
		}
	}
}
