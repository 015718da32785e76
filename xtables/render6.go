package xtables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
)

// The ip6t_ip6 fields (linux/netfilter_ipv6/ip6_tables.h): src, dst, smsk,
// dmsk (16 bytes each), iniface, outiface, their masks (16 each), proto
// (u16), tos, flags, invflags.
const (
	ip6Proto    = 128
	ip6Flags    = 131
	ip6InvFlags = 132
	ip6FProto   = 0x01 // IP6T_F_PROTO: -p given
)

// writeIP6 prints the ip6t_ip6 part as ip6tables-legacy-save 1.8.9's
// print_rule6 does: addresses, interfaces, protocol. A TOS match (a flag
// ip6tables never sets) is ErrUnsupported.
func writeIP6(b *bytes.Buffer, ip []byte) error {
	inv := ip[ip6InvFlags]
	if f := ip[ip6Flags]; f&^(ip6FProto|layouts[IPv6].gotoFlag) != 0 {
		return fmt.Errorf("ip6t_ip6 flags %#x: %w", f, ErrUnsupported)
	}
	writeAddr6(b, 's', ip[0:16], ip[32:48], inv&0x08 != 0)
	writeAddr6(b, 'd', ip[16:32], ip[48:64], inv&0x10 != 0)
	writeIface(b, 'i', ip[64:80], ip[96:112], inv&0x01 != 0)
	writeIface(b, 'o', ip[80:96], ip[112:128], inv&0x02 != 0)
	return writeProto(b, binary.NativeEndian.Uint16(ip[ip6Proto:]), inv&0x40 != 0)
}

// writeAddr6 is save_ipv6_addr: nothing for a /0 that is not inverted,
// else the address and the prefix length, or the mask when it is not a
// prefix.
func writeAddr6(b *bytes.Buffer, letter byte, addr, mask []byte, inv bool) {
	n := mask6Bits([16]byte(mask))
	if !inv && n == 0 {
		return
	}
	b.WriteString(not(inv) + " -" + string(letter) + " " + ntop(netip.AddrFrom16([16]byte(addr))) + "/")
	if n >= 0 {
		b.WriteString(strconv.Itoa(n))
	} else {
		b.WriteString(ntop(netip.AddrFrom16([16]byte(mask))))
	}
}

// mask6Bits is xtables_ip6mask_to_cidr: the prefix length of a contiguous
// mask, or -1.
func mask6Bits(m [16]byte) int {
	n, end := 0, false
	for _, c := range m {
		switch {
		case end:
			if c != 0 {
				return -1
			}
		case c == 0xff:
			n += 8
		default:
			k := bits.LeadingZeros8(^c)
			if c<<k != 0 {
				return -1
			}
			n, end = n+k, true
		}
	}
	return n
}

// ntop prints an address as glibc's inet_ntop does. For IPv6 that is
// RFC 5952, as netip prints it, but for the IPv4-compatible form: six zero
// words and a non-zero seventh print as "::a.b.c.d".
func ntop(a netip.Addr) string {
	if !a.Is6() || a.Is4In6() {
		return a.String()
	}
	b := a.As16()
	if [12]byte(b[:12]) == [12]byte{} && (b[12] != 0 || b[13] != 0) {
		return "::" + netip.AddrFrom4([4]byte(b[12:])).String()
	}
	return a.String()
}

// writeProto prints "-p NAME" as save_rule_details does, for a protocol
// other than 0.
func writeProto(b *bytes.Buffer, proto uint16, inv bool) error {
	if proto == 0 {
		return nil
	}
	name, ok := protoNames[proto]
	if !ok {
		return fmt.Errorf("protocol %d: %w", proto, ErrUnsupported)
	}
	b.WriteString(not(inv) + " -p " + name)
	return nil
}

// natRange6Size is struct nf_nat_range: flags, min_addr, max_addr (16
// bytes each), min_proto, max_proto. Revision-2 targets add base_proto
// (natRange2Size).
const natRange6Size = 40

// decodeRange6 reads an IPv6 target's nf_nat_range, or nf_nat_range2 with
// base.
func decodeRange6(d []byte, base bool) natRange {
	be := binary.BigEndian
	r := natRange{flags: binary.NativeEndian.Uint32(d), minIP: netip.AddrFrom16([16]byte(d[4:20])), maxIP: netip.AddrFrom16([16]byte(d[20:36])),
		minPort: be.Uint16(d[36:]), maxPort: be.Uint16(d[38:])}
	if base {
		r.basePort = be.Uint16(d[40:])
	}
	return r
}

// writeTarget6 prints the NAT targets of an IPv6 table as libxt_NAT 1.8.9
// does (MASQUERADE and REDIRECT revision 0, SNAT revision 1, DNAT
// revisions 1 and 2, all on nf_nat_range; another revision of these is
// ErrUnsupported). ok is false for any other target, which writeTarget
// prints as in either family.
func writeTarget6(b *bytes.Buffer, t Extension) (ok bool, err error) {
	var opt string
	skipColon, base := false, false
	switch {
	case t.Name == "MASQUERADE" && t.Revision == 0:
		opt, skipColon = "--to-ports ", true
	case t.Name == "REDIRECT" && t.Revision == 0:
		opt, skipColon = "--to-ports ", true
	case t.Name == "SNAT" && t.Revision == 1:
		opt = "--to-source "
	case t.Name == "DNAT" && (t.Revision == 1 || t.Revision == 2):
		opt, base = "--to-destination ", t.Revision == 2
	case t.Name == "MASQUERADE" || t.Name == "REDIRECT" || t.Name == "SNAT" || t.Name == "DNAT":
		return true, fmt.Errorf("IPv6 target %s revision %d: %w", t.Name, t.Revision, ErrUnsupported)
	default:
		return false, nil
	}
	if len(t.Data) < natRange6Size || base && len(t.Data) < natRange2Size {
		return true, fmt.Errorf("target %s: %d bytes of range: %w", t.Name, len(t.Data), ErrUnsupported)
	}
	b.WriteString(" -j " + t.Name)
	return true, writeNATRange(b, natPrint{opt: opt, skipColon: skipColon, v6: true, fully: true}, decodeRange6(t.Data, base))
}
