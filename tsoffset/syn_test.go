package tsoffset

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// A SYN from 127.0.0.1:40001 to 127.0.0.1:8080 laid out as Linux 6.18 sends it
// (MSS, SACK permitted, timestamps TSval 3367983619 TSecr 0, NOP, window
// scale), IP header included: what a raw IPPROTO_TCP socket reads.
const synHex = "4500003c3b2a40004006016d7f0000017f000001" +
	"9c411f905c2d3e7a00000000a002ffd7fe300000" +
	"0204ffd70402080ac8bf5a030000000001030307"

func TestParseSYN(t *testing.T) {
	pkt, _ := hex.DecodeString(synHex)
	s, err := ParseSYN(pkt)
	if err != nil {
		t.Fatal(err)
	}
	want := Segment{Src: netip.MustParseAddrPort("127.0.0.1:40001"), Dst: netip.MustParseAddrPort("127.0.0.1:8080"),
		Flags: FlagSYN, Seq: 0x5c2d3e7a, HasTS: true, TSval: 3367983619}
	if s != want {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	if !s.SYN() {
		t.Error("not read as a SYN")
	}
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		err  string
	}{
		{"short", func(b []byte) []byte { return b[:19] }, "shorter than an IPv4 header"},
		{"IPv6", func(b []byte) []byte { b[0] = 0x65; return b }, "IP version 6"},
		{"UDP", func(b []byte) []byte { b[9] = 17; return b }, "IP protocol 17"},
		{"fragment", func(b []byte) []byte { b[7] = 1; return b }, "fragment"},
		{"TCP cut", func(b []byte) []byte { return b[:30] }, "TCP header cut short"},
		{"data offset past the end", func(b []byte) []byte { return b[:45] }, "data offset"},
		{"option past the end", func(b []byte) []byte { b[20+20+1] = 40; return b }, "runs past the header"},
		{"bad timestamp length", func(b []byte) []byte { b[20+20+6+1] = 8; return b }, "timestamp option of length 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := hex.DecodeString(synHex)
			_, err := ParseSYN(tc.mut(p))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func FuzzParseSYN(f *testing.F) {
	pkt, _ := hex.DecodeString(synHex)
	f.Add(pkt)
	f.Add(pkt[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSYN(b)
		if err != nil {
			return
		}
		if !s.Src.IsValid() || !s.Dst.IsValid() || !s.Src.Addr().Is4() {
			t.Fatalf("accepted %x with addresses %v %v", b, s.Src, s.Dst)
		}
	})
}
