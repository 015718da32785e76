package tsoffset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// TCP header flags ParseSYN reports.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// Segment is what ParseSYN reads from an IPv4 TCP segment.
type Segment struct {
	Src, Dst netip.AddrPort
	Flags    uint8
	Seq      uint32
	// HasTS is set when the segment carries the timestamp option (RFC
	// 7323); TSval and TSecr are its values.
	HasTS        bool
	TSval, TSecr uint32
}

// SYN reports whether the segment opens a connection (SYN without ACK).
func (s Segment) SYN() bool { return s.Flags&(FlagSYN|FlagACK) == FlagSYN }

// ParseSYN reads the addresses, ports, flags, sequence number and timestamp
// option of an IPv4 packet holding a TCP segment, as a raw IPPROTO_TCP
// socket receives it (IP header included). It rejects truncated headers,
// other protocols and IP versions, fragments after the first, and malformed
// options (a length that runs past the header, a timestamp option whose
// length is not 10).
func ParseSYN(pkt []byte) (Segment, error) {
	var s Segment
	if len(pkt) < 20 {
		return s, fmt.Errorf("packet of %d bytes: shorter than an IPv4 header", len(pkt))
	}
	if v := pkt[0] >> 4; v != 4 {
		return s, fmt.Errorf("IP version %d, want 4", v)
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || ihl > len(pkt) {
		return s, fmt.Errorf("IPv4 header length %d in a packet of %d bytes", ihl, len(pkt))
	}
	if pkt[9] != 6 {
		return s, fmt.Errorf("IP protocol %d, want TCP (6)", pkt[9])
	}
	if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return s, errors.New("a fragment after the first: no TCP header")
	}
	tcp := pkt[ihl:]
	if len(tcp) < 20 {
		return s, fmt.Errorf("TCP header cut short: %d bytes", len(tcp))
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return s, fmt.Errorf("TCP data offset %d in a segment of %d bytes", doff, len(tcp))
	}
	s.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[12:16])), binary.BigEndian.Uint16(tcp[0:2]))
	s.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[16:20])), binary.BigEndian.Uint16(tcp[2:4]))
	s.Seq = binary.BigEndian.Uint32(tcp[4:8])
	s.Flags = tcp[13]
	return s, s.options(tcp[20:doff])
}

// options reads the TCP options for the timestamp (kind 8, length 10).
func (s *Segment) options(opts []byte) error {
	for i := 0; i < len(opts); {
		kind := opts[i]
		switch kind {
		case 0: // end of options
			return nil
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(opts) {
			return fmt.Errorf("TCP option %d at %d has no length", kind, i)
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return fmt.Errorf("TCP option %d at %d: length %d runs past the header", kind, i, l)
		}
		if kind == 8 {
			if l != 10 {
				return fmt.Errorf("timestamp option of length %d, want 10", l)
			}
			s.HasTS = true
			s.TSval = binary.BigEndian.Uint32(opts[i+2 : i+6])
			s.TSecr = binary.BigEndian.Uint32(opts[i+6 : i+10])
		}
		i += l
	}
	return nil
}
