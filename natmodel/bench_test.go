package natmodel

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// BenchmarkAttempt measures one connection attempt through the model:
// NewConn, SNAT (plain masquerade, 5.0), Confirm, and the destruction of an
// old entry, with about 4096 entries live.
func BenchmarkAttempt(b *testing.B) {
	for _, bc := range []struct {
		name  string
		era   Era
		flags Flags
	}{
		{"5.0/masquerade", Era50, 0},
		{"5.0/fully-random", Era50, ProtoRandomFully},
		{"legacy/masquerade", Legacy, 0},
		{"6.5/masquerade", Era65, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tb, _ := NewTable(Config{Era: bc.era, Rand: rand.New(rand.NewPCG(1, 1))})
			r := Masquerade(netip.MustParseAddr("192.0.2.1"), bc.flags, 0, 0)
			src := rand.New(rand.NewPCG(2, 2))
			const live = 4096
			ring := make([]ConnID, live)
			dst := netip.MustParseAddrPort("198.51.100.1:80")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tb.Destroy(ring[i%live])
				p := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 63), byte(i)}), uint16(32768+src.IntN(28232)))
				id, err := tb.NewConn(Tuple{TCP, p, dst})
				if err != nil {
					continue
				}
				tb.SNAT(id, &r)
				if v, _ := tb.Confirm(id); v == Accepted {
					ring[i%live] = id
				}
			}
		})
	}
}
