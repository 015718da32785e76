package natmodel

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// script is a rand.Source that returns scripted 32-bit values (in the high
// half, where rand.Rand.Uint32 reads them), then zeros.
type script struct {
	vals []uint32
	used int
}

func (s *script) Uint64() uint64 {
	if s.used >= len(s.vals) {
		s.used++
		return 0
	}
	v := s.vals[s.used]
	s.used++
	return uint64(v) << 32
}

var (
	natIP = netip.MustParseAddr("192.0.2.1")
	dst1  = netip.MustParseAddrPort("198.51.100.1:80")
	dst2  = netip.MustParseAddrPort("198.51.100.2:80")
)

func pod(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), port)
}

// newTable returns a table whose random draws after the boot-time ones are
// vals, in order.
func newTable(t *testing.T, era Era, vals ...uint32) (*Table, *script) {
	t.Helper()
	boot := 1 // secret
	if era.Rover() {
		boot = 3 // secret, tcp rover, udp rover
	}
	s := &script{vals: append(make([]uint32, boot), vals...)}
	tb, err := NewTable(Config{Era: era, Rand: rand.New(s)})
	if err != nil {
		t.Fatal(err)
	}
	return tb, s
}

func masq(flags Flags, lo, hi uint16) *Range {
	r := Masquerade(natIP, flags, lo, hi)
	return &r
}

// connect runs NewConn + SNAT and returns the id and choice.
func connect(t *testing.T, tb *Table, proto Proto, src, dst netip.AddrPort, r *Range) (ConnID, Choice) {
	t.Helper()
	id, err := tb.NewConn(Tuple{Proto: proto, Src: src, Dst: dst})
	if err != nil {
		t.Fatalf("NewConn(%v -> %v): %v", src, dst, err)
	}
	ch, err := tb.SNAT(id, r)
	if err != nil {
		t.Fatalf("SNAT: %v", err)
	}
	return id, ch
}

func confirm(t *testing.T, tb *Table, id ConnID) Verdict {
	t.Helper()
	v, err := tb.Confirm(id)
	if err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	return v
}

// occupy confirms a connection that holds nat source port p towards dst.
func occupy(t *testing.T, tb *Table, i int, p uint16, dst netip.AddrPort, r *Range) ConnID {
	t.Helper()
	id, ch := connect(t, tb, TCP, pod(i, p), dst, r)
	if ch.Source.Port() != p {
		t.Fatalf("occupy: wanted port %d, got %v (%v)", p, ch.Source, ch.Step)
	}
	if v := confirm(t, tb, id); v != Accepted {
		t.Fatalf("occupy: confirm %v", v)
	}
	return id
}
