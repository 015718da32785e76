package xtables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The renderers of what service proxies write into the nat table
// (kube-proxy's iptables mode: a statistic match per endpoint, a DNAT per
// endpoint; REDIRECT for mesh sidecars), printed as iptables 1.8.9's
// libxt_statistic and libxt_DNAT save them. The audit's DNS scan reads
// every rule of the table, so a kube-proxy table must render whole.

// The statistic match (struct xt_statistic_info, revision 0).
const (
	statisticRandom = 0
	statisticNth    = 1
	statisticInvert = 0x1
)

// statisticSize is the part of struct xt_statistic_info that save reads:
// mode, flags, and the union (probability; or every, packet, count).
const statisticSize = 16

// writeStatistic prints a statistic match: " --mode random --probability
// 0.33333333333" (the probability scaled by 2^31, printed with %.11f) or
// " --mode nth --every 3 --packet 0" (every stored minus one); an
// inversion stands after the mode.
func writeStatistic(b *bytes.Buffer, d []byte) error {
	ne := binary.NativeEndian
	mode, inv := ne.Uint16(d), not(ne.Uint16(d[2:])&statisticInvert != 0)
	switch mode {
	case statisticRandom:
		p := float64(ne.Uint32(d[4:])) / 0x80000000
		b.WriteString(" --mode random" + inv + " --probability " + strconv.FormatFloat(p, 'f', 11, 64))
	case statisticNth:
		every, packet := ne.Uint32(d[4:])+1, ne.Uint32(d[8:]) // every wraps as %u does
		b.WriteString(" --mode nth" + inv + " --every " + strconv.FormatUint(uint64(every), 10) +
			" --packet " + strconv.FormatUint(uint64(packet), 10))
	default:
		return fmt.Errorf("statistic mode %d: %w", mode, ErrUnsupported)
	}
	return nil
}

// natRange2Size is struct nf_nat_range2 aligned: flags, min_addr and
// max_addr (union nf_inet_addr, 16 bytes each), min_proto, max_proto,
// base_proto.
const natRange2Size = 48

// natProtoOffset is NF_NAT_RANGE_PROTO_OFFSET: a shifted port map
// ("1000-2000/1500").
const natProtoOffset = 0x20

// decodeRange2 reads the range of a revision-2 DNAT target (IPv4: the
// address in the first 4 bytes of each nf_inet_addr). Other bytes set in
// the addresses are ErrUnsupported: save compares all 16.
func decodeRange2(d []byte) (natRange, error) {
	for _, tail := range [][]byte{d[8:20], d[24:36]} {
		for _, c := range tail {
			if c != 0 {
				return natRange{}, fmt.Errorf("an IPv4 DNAT range with an IPv6 address: %w", ErrUnsupported)
			}
		}
	}
	be := binary.BigEndian
	return natRange{flags: binary.NativeEndian.Uint32(d), minIP: netip.AddrFrom4([4]byte(d[4:8])), maxIP: netip.AddrFrom4([4]byte(d[20:24])),
		minPort: be.Uint16(d[36:]), maxPort: be.Uint16(d[38:]), basePort: be.Uint16(d[40:])}, nil
}

// natRangeKnown are the range flags writeNATRange prints; any other sends
// the rule to the save tool.
const natRangeKnown = natMapIPs | natProtoSpecified | natRandom | natRandomFully | natPersistent | natProtoOffset

// natPrint is how libxt_NAT's __NAT_print prints one target's range.
type natPrint struct {
	opt       string // "--to-destination "
	skipColon bool   // REDIRECT, MASQUERADE: a bare port range has no colon
	v6        bool   // an IPv6 range: addresses in brackets when ports follow
	// fully lets --random-fully through: save versions print it
	// differently on IPv4's DNAT and REDIRECT, where iptables does not
	// write it.
	fully bool
}

// writeNATRange prints a range as libxt_NAT's __NAT_print does: p.opt and
// "ADDR[-ADDR][:PORT[-PORT[/BASE]]]" when the range maps anything, then
// --random, --random-fully and --persistent. Flags outside natRangeKnown
// are ErrUnsupported.
func writeNATRange(b *bytes.Buffer, p natPrint, r natRange) error {
	known := uint32(natRangeKnown)
	if !p.fully {
		known &^= natRandomFully
	}
	if r.flags&^known != 0 {
		return fmt.Errorf("NAT range flags %#x: %w", r.flags, ErrUnsupported)
	}
	var s string
	if r.flags&natMapIPs != 0 {
		s = ntop(r.minIP)
		if r.maxIP != r.minIP {
			s += "-" + ntop(r.maxIP)
		}
		if p.v6 && r.flags&natProtoSpecified != 0 {
			s = "[" + s + "]"
		}
	}
	if r.flags&natProtoSpecified != 0 {
		s += ":" + portRange(r, "-")
		if r.flags&natProtoOffset != 0 {
			s += "/" + strconv.Itoa(int(r.basePort))
		}
	}
	if p.skipColon {
		s = strings.TrimPrefix(s, ":")
	}
	if s != "" {
		b.WriteString(" " + p.opt + s)
	}
	if r.flags&natRandom != 0 {
		b.WriteString(" --random")
	}
	if r.flags&natRandomFully != 0 {
		b.WriteString(" --random-fully")
	}
	if r.flags&natPersistent != 0 {
		b.WriteString(" --persistent")
	}
	return nil
}

// writeDNAT prints a revision-2 DNAT target (what iptables 1.8 writes on
// kernels since 4.19).
func writeDNAT(b *bytes.Buffer, d []byte) error {
	r, err := decodeRange2(d)
	if err != nil {
		return err
	}
	b.WriteString(" -j DNAT")
	return writeNATRange(b, natPrint{opt: "--to-destination "}, r)
}

// writeRedirect prints a REDIRECT target (revision 0, one compat range).
func writeRedirect(b *bytes.Buffer, d []byte) error {
	r, err := decodeRange(d)
	if err != nil {
		return err
	}
	b.WriteString(" -j REDIRECT")
	return writeNATRange(b, natPrint{opt: "--to-ports ", skipColon: true}, r)
}
