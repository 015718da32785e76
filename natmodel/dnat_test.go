package natmodel

import (
	"errors"
	"net/netip"
	"testing"
)

// Parallel queries of one socket to a service address, DNATed to one
// backend each, then masqueraded: the kube-dns case of the 5 s delays.
// Different backends give entries equal in the original direction and
// different in the reply: dropped until 5.6, inserted reply-only from 5.6.
// One backend gives identical entries: merged from 4.19. Two pods meeting
// on one backend through one port clash in the reply: dropped in every era.
func TestDNATClashes(t *testing.T) {
	vip := netip.MustParseAddrPort("10.96.0.10:53")
	b1, b2 := netip.MustParseAddrPort("198.51.100.2:53"), netip.MustParseAddrPort("198.51.100.3:53")
	query := func(tb *Table, src, backend netip.AddrPort) ConnID {
		t.Helper()
		id, err := tb.NewConn(Tuple{UDP, src, vip})
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.DNAT(id, backend); err != nil {
			t.Fatal(err)
		}
		if _, err := tb.SNAT(id, masq(0, 0, 0)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, tc := range []struct {
		name     string
		era      Era
		src2, b2 netip.AddrPort
		want     Verdict
	}{
		{"5.0 parallel, two backends", Era50, pod(1, 5353), b2, Dropped},
		{"5.6 parallel, two backends", Era{5, 6}, pod(1, 5353), b2, ClashInserted},
		{"4.14 parallel, one backend", Era{4, 14}, pod(1, 5353), b1, Dropped},
		{"4.19 parallel, one backend", Legacy, pod(1, 5353), b1, Merged},
		{"6.12 two pods, one backend", Era{6, 12}, pod(2, 5353), b1, Dropped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTable(t, tc.era)
			a := query(tb, pod(1, 5353), b1)
			b := query(tb, tc.src2, tc.b2)
			if info, _ := tb.Conn(b); info.Orig.Dst != vip || info.Reply.Src != tc.b2 {
				t.Errorf("DNATed entry %+v", info)
			}
			if v := confirm(t, tb, a); v != Accepted {
				t.Fatalf("first %v", v)
			}
			if v := confirm(t, tb, b); v != tc.want {
				t.Errorf("second %v, want %v", v, tc.want)
			}
		})
	}
	tb, _ := newTable(t, Era65)
	id := query(tb, pod(1, 1000), b1)
	if err := tb.DNAT(id, b2); !errors.Is(err, ErrUnknownConn) {
		t.Errorf("DNAT after SNAT: %v", err)
	}
}
