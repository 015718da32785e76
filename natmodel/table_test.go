package natmodel

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// UDP clash resolution and counters per era (nf_ct_resolve_clash,
// KERNEL.md §4).
func TestUDPClashResolution(t *testing.T) {
	type counters struct{ insertFailed, drop, clashResolve uint64 }
	for _, tc := range []struct {
		name string
		era  Era
		// sameFlow: the same socket sends two first packets on two CPUs:
		// identical tuples both ways. origOnly: same original tuple but the
		// second went through another rule (different reply).
		// crossPod: two pods, same port (the SNAT race).
		scenario string
		want     Verdict
		c        counters
	}{
		{"4.4 same flow", Era{4, 4}, "sameFlow", Dropped, counters{1, 1, 0}},
		{"4.14 same flow", Era{4, 14}, "sameFlow", Dropped, counters{1, 1, 0}},
		{"legacy (4.19) same flow", Legacy, "sameFlow", Merged, counters{1, 0, 0}},
		{"6.12 same flow", Era{6, 12}, "sameFlow", Merged, counters{0, 0, 1}},
		{"6.12 orig only", Era{6, 12}, "origOnly", ClashInserted, counters{0, 0, 1}},
		{"6.12 cross pod", Era{6, 12}, "crossPod", Dropped, counters{1, 1, 0}},
		{"5.0 same flow", Era50, "sameFlow", Merged, counters{1, 0, 0}},
		{"5.10 same flow", Era{5, 10}, "sameFlow", Merged, counters{0, 0, 1}},
		{"5.0 orig only", Era50, "origOnly", Dropped, counters{1, 1, 0}},
		{"5.6 orig only", Era{5, 6}, "origOnly", ClashInserted, counters{1, 0, 0}},
		{"6.5 orig only", Era65, "origOnly", ClashInserted, counters{0, 0, 1}},
		{"legacy cross pod", Legacy, "crossPod", Dropped, counters{1, 1, 0}},
		{"5.0 cross pod", Era50, "crossPod", Dropped, counters{1, 1, 0}},
		{"6.5 cross pod", Era65, "crossPod", Dropped, counters{1, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(t, tc.era)
			r1 := masq(0, 0, 0)
			r2 := r1
			srcB := pod(1, 5353)
			switch tc.scenario {
			case "origOnly":
				rr := Masquerade(netip.MustParseAddr("192.0.2.9"), 0, 0, 0)
				r2 = &rr
			case "crossPod":
				srcB = pod(2, 5353)
			}
			a, _ := connect(t, tb, UDP, pod(1, 5353), dst1, r1)
			b, _ := connect(t, tb, UDP, srcB, dst1, r2)
			if v := confirm(t, tb, a); v != Accepted {
				t.Fatalf("first %v", v)
			}
			if v := confirm(t, tb, b); v != tc.want {
				t.Errorf("second %v, want %v", v, tc.want)
			}
			st := tb.Stats()
			if got := (counters{st.InsertFailed, st.Drop, st.ClashResolve}); got != tc.c {
				t.Errorf("counters %+v, want %+v", got, tc.c)
			}
			_, alive := tb.Conn(b)
			if alive != (tc.want == ClashInserted) {
				t.Errorf("loser alive = %v", alive)
			}
		})
	}
}

// A TCP SYN on the tuple of a closing entry reopens it: the old entry is
// killed. A live entry's tuple cannot start a new one.
func TestReopen(t *testing.T) {
	tb, _ := newTable(t, Era65)
	a := occupy(t, tb, 1, 40000, dst1, masq(0, 0, 0))
	if _, err := tb.NewConn(Tuple{TCP, pod(1, 40000), dst1}); !errors.Is(err, ErrExists) {
		t.Errorf("NewConn on a live tuple: %v, want ErrExists", err)
	}
	tb.SetState(a, TimeWait)
	b, err := tb.NewConn(Tuple{TCP, pod(1, 40000), dst1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.Conn(a); ok || tb.Len() != 0 {
		t.Errorf("old entry not killed")
	}
	if tb.Destroy(a) {
		t.Errorf("Destroy of a stale id reported true")
	}
	ch, _ := tb.SNAT(b, masq(0, 0, 0))
	if ch.Step != StepPreserve {
		t.Errorf("reopened SNAT %+v", ch)
	}
}

func TestStaleAndBadInput(t *testing.T) {
	tb, _ := newTable(t, Era50)
	if _, err := tb.SNAT(12345, masq(0, 0, 0)); !errors.Is(err, ErrUnknownConn) {
		t.Errorf("SNAT stale: %v", err)
	}
	if _, err := tb.Confirm(0); !errors.Is(err, ErrUnknownConn) {
		t.Errorf("Confirm 0: %v", err)
	}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:80")
	if _, err := tb.NewConn(Tuple{TCP, v6, v6}); err == nil {
		t.Errorf("IPv6 accepted")
	}
	if _, err := tb.NewConn(Tuple{Proto(1), pod(1, 1), dst1}); err == nil {
		t.Errorf("ICMP accepted")
	}
	id, _ := connect(t, tb, TCP, pod(1, 1), dst1, masq(0, 0, 0))
	if _, err := tb.SNAT(id, masq(0, 0, 0)); err == nil {
		t.Errorf("second SNAT on one entry accepted")
	}
	if _, err := NewTable(Config{Era: Era50}); err == nil {
		t.Errorf("NewTable without Rand accepted")
	}
	if _, err := NewTable(Config{Rand: rand.New(rand.NewPCG(1, 2))}); err == nil {
		t.Errorf("NewTable without Era accepted")
	}
}

func TestRangeValidate(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.4")
	for _, tc := range []struct {
		r  Range
		ok bool
	}{
		{Masquerade(a, 0, 0, 0), true},
		{Masquerade(a, ProtoRandomFully, 1024, 1100), true},
		{Masquerade(a, 0, 2000, 1000), false},
		{Masquerade(a, 0, 0, 1000), false},
		{Range{Flags: MapIPs, MinAddr: b, MaxAddr: a}, false},
		{Range{Flags: MapIPs, MinAddr: a, MaxAddr: b}, true},
		{Range{Flags: MapIPs, MinAddr: netip.MustParseAddr("::1"), MaxAddr: netip.MustParseAddr("::1")}, false},
	} {
		err := tc.r.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.r, err)
		}
		if err != nil && !errors.Is(err, ErrRange) {
			t.Errorf("error %v does not wrap ErrRange", err)
		}
	}
}

func TestParseEra(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Era
		ok   bool
	}{
		{"legacy", Legacy, true},
		{"LEGACY", Legacy, true},
		{"4.19", Legacy, true},
		{"5.0", Era50, true},
		{"6.5", Era65, true},
		{"6.18.44", Era{6, 18}, true},
		{"6.1.0-13-amd64", Era{6, 1}, true},
		{"v5.10", Era{5, 10}, true},
		{"3.10", Era{}, false},
		{"5", Era{}, false},
		{"five.0", Era{}, false},
		{"5.0.x", Era{}, false},
		{"", Era{}, false},
		{"12.0", Era{}, false},
	} {
		got, err := ParseEra(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseEra(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, e := range []Era{Legacy, Era50, Era65} {
		if p, err := ParseEra(e.String()); err != nil || p != e {
			t.Errorf("round trip %v: %v %v", e, p, err)
		}
	}
	if !Legacy.Rover() || Era50.Rover() || Era50.EvictTimeWait() || !Era65.EvictTimeWait() ||
		Era50.ClashResolveCounter() || !(Era{5, 10}).ClashResolveCounter() {
		t.Errorf("era features wrong")
	}
}

func FuzzParseEra(f *testing.F) {
	for _, s := range []string{"legacy", "5.0", "6.18.44", "6.1.0-13-amd64", "v4.19", "", "9.99.99", "5..0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEra(s)
		if err != nil {
			return
		}
		if e.Before(Era{3, 13}) {
			t.Errorf("ParseEra(%q) = %v: too old accepted", s, e)
		}
		if p, err := ParseEra(e.String()); err != nil || p != e {
			t.Errorf("round trip of %q: %v %v", s, p, err)
		}
	})
}

// Determinism: the same seed gives the same choices.
func TestDeterministic(t *testing.T) {
	run := func() []netip.AddrPort {
		tb, _ := NewTable(Config{Era: Era50, Rand: rand.New(rand.NewPCG(7, 7))})
		var out []netip.AddrPort
		r := masq(ProtoRandomFully, 0, 0)
		for i := 0; i < 200; i++ {
			id, _ := tb.NewConn(Tuple{TCP, pod(i, 40000), dst1})
			ch, _ := tb.SNAT(id, r)
			tb.Confirm(id)
			out = append(out, ch.Source)
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("run differs at %d: %v vs %v", i, a[i], b[i])
		}
	}
}
