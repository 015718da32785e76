package nftnl

import (
	"encoding/binary"
	"fmt"
	"net"
)

// XTNATRange is the range inside the info of an iptables-nft MASQUERADE or
// SNAT target (an xt target expression): nf_nat_ipv4_multi_range_compat for
// IPv4 revision 0, nf_nat_range or nf_nat_range2 otherwise. The info is a C
// struct in host byte order, with ports in network order.
type XTNATRange struct {
	Flags            uint32
	MinIP, MaxIP     net.IP
	MinPort, MaxPort uint16
}

// XTNATFlagsOffset is where the flags word sits in the target info of an
// IPv4 (family 2) or IPv6 target of revision rev: after the u32 rangesize of
// the compat struct, first otherwise.
func XTNATFlagsOffset(family byte, rev uint32) int {
	if family == familyIPv4 && rev == 0 {
		return 4
	}
	return 0
}

// DecodeXTNATRange decodes the range of a target's raw info.
func DecodeXTNATRange(info []byte, family byte, rev uint32) (XTNATRange, error) {
	ne, be := binary.NativeEndian, binary.BigEndian
	if XTNATFlagsOffset(family, rev) == 4 {
		// rangesize, flags, min_ip, max_ip, min, max
		if len(info) < 20 {
			return XTNATRange{}, fmt.Errorf("xt NAT target info of %d bytes is too short", len(info))
		}
		return XTNATRange{Flags: ne.Uint32(info[4:8]), MinIP: net.IP(info[8:12]), MaxIP: net.IP(info[12:16]),
			MinPort: be.Uint16(info[16:18]), MaxPort: be.Uint16(info[18:20])}, nil
	}
	// flags, min_addr[16], max_addr[16], min_proto, max_proto
	if len(info) < 40 {
		return XTNATRange{}, fmt.Errorf("xt NAT target info of %d bytes is too short", len(info))
	}
	return XTNATRange{Flags: ne.Uint32(info[0:4]), MinIP: net.IP(info[4:20]), MaxIP: net.IP(info[20:36]),
		MinPort: be.Uint16(info[36:38]), MaxPort: be.Uint16(info[38:40])}, nil
}
