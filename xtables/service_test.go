package xtables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestRenderersRefuse checks the extensions whose encoding save would
// print differently, or that no iptables writes, are refused (the rule
// then goes to iptables-legacy-save), and that their well-formed
// neighbours print.
func TestRenderersRefuse(t *testing.T) {
	ne := binary.NativeEndian
	dnat := func(flags uint32, tail byte) []byte {
		d := make([]byte, natRange2Size)
		ne.PutUint32(d, flags)
		copy(d[4:], []byte{10, 0, 0, 5})
		copy(d[20:], []byte{10, 0, 0, 5})
		d[30] = tail // an IPv6 byte of max_addr
		binary.BigEndian.PutUint16(d[36:], 53)
		binary.BigEndian.PutUint16(d[38:], 53)
		return d
	}
	statistic := func(mode uint16) []byte {
		d := make([]byte, statisticSize)
		ne.PutUint16(d, mode)
		return d
	}
	connmark := func(dir, mode byte) []byte { return []byte{1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, dir, 0, mode} }
	owner := func(match byte) []byte { d := make([]byte, ownerSize); d[16] = match; return d }
	for _, tc := range []struct {
		name  string
		write func(*bytes.Buffer, []byte) error
		data  []byte
		want  string // "" when refused
	}{
		{"dnat", writeDNAT, dnat(natMapIPs|natProtoSpecified, 0), " -j DNAT --to-destination 10.0.0.5:53"},
		{"dnat fully-random", writeDNAT, dnat(natMapIPs|natProtoSpecified|natRandomFully, 0), ""},
		{"dnat netmap flag", writeDNAT, dnat(natMapIPs|0x40, 0), ""},
		{"dnat ipv6 bytes", writeDNAT, dnat(natMapIPs, 1), ""},
		{"statistic nth", writeStatistic, statistic(statisticNth), " --mode nth --every 1 --packet 0"},
		{"statistic mode 2", writeStatistic, statistic(2), ""},
		{"connmark set", writeConnmark, connmark(0, 0), " -j CONNMARK --set-xmark 0x1/0x1"},
		{"connmark mode 3", writeConnmark, connmark(0, 3), ""},
		{"connmark shift 2", writeConnmark, connmark(2, 0), ""},
		{"owner socket", writeOwner, owner(ownerSocket), " --socket-exists"},
		{"owner flag 0x10", writeOwner, owner(0x10), ""},
	} {
		var b bytes.Buffer
		err := tc.write(&b, tc.data)
		switch {
		case tc.want == "" && !errors.Is(err, ErrUnsupported):
			t.Errorf("%s: %q, %v; want ErrUnsupported", tc.name, b.String(), err)
		case tc.want != "" && (err != nil || b.String() != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, b.String(), err, tc.want)
		}
	}
}
