package xtables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// writeSet refuses what libxt_set would print differently or not at all:
// an unknown set, more dimensions than ipset has, direction bits past the
// dimensions, match flags and counter operators it does not know.
func TestWriteSetRefuses(t *testing.T) {
	info := func(index uint16, dim, flags uint8, mflags uint32, pop, bop uint8) []byte {
		d := make([]byte, setInfoSize)
		ne := binary.NativeEndian
		ne.PutUint16(d, index)
		d[2], d[3], d[16], d[32] = dim, flags, pop, bop
		ne.PutUint32(d[40:], mflags)
		return d
	}
	p := &Parsed{Table: &Table{SetNames: map[uint16]string{7: "pods"}}}
	for _, tc := range []struct {
		name string
		d    []byte
		want string // "" for ErrUnsupported
	}{
		{"plain", info(7, 2, 0x02, 0, 0, 0), " --match-set pods src,dst"},
		{"inverted", info(7, 1, 0x01, 0, 0, 0), " ! --match-set pods dst"},
		{"unknown set", info(8, 1, 0, 0, 0, 0), ""},
		{"seven dimensions", info(7, 7, 0, 0, 0, 0), ""},
		{"direction past dim", info(7, 1, 0x04, 0, 0, 0), ""},
		{"physdev flag", info(7, 1, 0, 1<<1, 0, 0), ""},
		{"map skbmark flag", info(7, 1, 0, 1<<8, 0, 0), ""},
		{"packets op 5", info(7, 1, 0, 0, 5, 0), ""},
		{"bytes op 9", info(7, 1, 0, 0, 0, 9), ""},
	} {
		var b bytes.Buffer
		err := p.writeSet(&b, tc.d)
		switch {
		case tc.want == "" && !errors.Is(err, ErrUnsupported):
			t.Errorf("%s: %q, %v; want ErrUnsupported", tc.name, b.String(), err)
		case tc.want != "" && (err != nil || b.String() != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, b.String(), err, tc.want)
		}
	}
}
