package natmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Flags are the NF_NAT_RANGE_* flags of include/uapi/linux/netfilter/nf_nat.h.
type Flags uint32

// Range flags.
const (
	MapIPs           Flags = 1
	ProtoSpecified   Flags = 2
	ProtoRandom      Flags = 4
	Persistent       Flags = 8
	ProtoRandomFully Flags = 16

	// RandomAll is NF_NAT_RANGE_PROTO_RANDOM_ALL.
	RandomAll = ProtoRandom | ProtoRandomFully
)

// Range is the kernel's struct nf_nat_range2 for a source NAT: what the SNAT or
// MASQUERADE target hands to nf_nat_setup_info. For masquerade the kernel
// fills MinAddr = MaxAddr = the outgoing interface's address and sets MapIPs;
// Masquerade builds that.
type Range struct {
	Flags            Flags
	MinAddr, MaxAddr netip.Addr // IPv4; used when Flags has MapIPs
	MinPort, MaxPort uint16     // used when Flags has ProtoSpecified
}

// Masquerade returns the range MASQUERADE uses on an interface whose address
// is addr: flags may hold ProtoRandom, ProtoRandomFully and Persistent; a
// non-zero port range (to :min-max) sets ProtoSpecified.
func Masquerade(addr netip.Addr, flags Flags, minPort, maxPort uint16) Range {
	r := Range{Flags: flags | MapIPs, MinAddr: addr, MaxAddr: addr}
	if minPort != 0 || maxPort != 0 {
		r.Flags |= ProtoSpecified
		r.MinPort, r.MaxPort = minPort, maxPort
	}
	return r
}

// Tuples is how many source tuples r offers towards one destination for
// an original source port of 1024 or more: its ports (1024-65535 when it
// names none) times its addresses. r must pass Validate.
func (r Range) Tuples() int {
	ports := 65535 - 1024 + 1
	if r.Flags&ProtoSpecified != 0 {
		ports = int(r.MaxPort) - int(r.MinPort) + 1
	}
	addrs := 1
	if r.Flags&MapIPs != 0 {
		a, b := r.MinAddr.As4(), r.MaxAddr.As4()
		addrs = int(binary.BigEndian.Uint32(b[:])-binary.BigEndian.Uint32(a[:])) + 1
	}
	return ports * addrs
}

// ErrRange reports a range the model cannot use.
var ErrRange = errors.New("bad NAT range")

// Validate checks that r is a usable IPv4 source-NAT range: addresses set and
// ordered when MapIPs is set, ports ordered and non-zero when ProtoSpecified is.
func (r Range) Validate() error {
	if r.Flags&MapIPs != 0 {
		if !r.MinAddr.Is4() || !r.MaxAddr.Is4() {
			return fmt.Errorf("%w: address range %v-%v is not IPv4", ErrRange, r.MinAddr, r.MaxAddr)
		}
		if r.MaxAddr.Less(r.MinAddr) {
			return fmt.Errorf("%w: address range %v-%v is empty (min > max)", ErrRange, r.MinAddr, r.MaxAddr)
		}
	}
	if r.Flags&ProtoSpecified != 0 {
		if r.MinPort == 0 || r.MaxPort == 0 {
			return fmt.Errorf("%w: port range %d-%d includes port 0", ErrRange, r.MinPort, r.MaxPort)
		}
		if r.MaxPort < r.MinPort {
			return fmt.Errorf("%w: port range %d-%d is empty (min > max)", ErrRange, r.MinPort, r.MaxPort)
		}
	}
	return nil
}

// internal form of a range, host-order IPv4.
type rng struct {
	flags            Flags
	minIP, maxIP     uint32
	minPort, maxPort uint16
}

// internal fills x with r's internal form. It writes x in place: building
// the five-field struct and copying it costs a store-forwarding stall.
func (r *Range) internal(x *rng) {
	x.flags, x.minPort, x.maxPort = r.Flags, r.MinPort, r.MaxPort
	x.minIP, x.maxIP = 0, 0
	if r.Flags&MapIPs != 0 {
		x.minIP, x.maxIP = ip4(r.MinAddr), ip4(r.MaxAddr)
	}
}
