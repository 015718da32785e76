package natmodel

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// Proto is an IP protocol number.
type Proto uint8

// Protocols the model knows.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Tuple is one direction of a connection as conntrack sees it.
type Tuple struct {
	Proto    Proto
	Src, Dst netip.AddrPort
}

func (t Tuple) String() string { return fmt.Sprintf("%v %v -> %v", t.Proto, t.Src, t.Dst) }

// key is a Tuple in host order, comparable and cheap to hash. Its words
// are the ones the hashes take (pack), and it has few enough fields that the
// compiler keeps it in registers.
type key struct {
	addrs uint64 // src<<32 | dst
	ports uint32 // sport<<16 | dport
	proto Proto
}

func mkKey(src, dst uint32, sport, dport uint16, proto Proto) key {
	return key{addrs: uint64(src)<<32 | uint64(dst), ports: uint32(sport)<<16 | uint32(dport), proto: proto}
}

func (k key) src() uint32   { return uint32(k.addrs >> 32) }
func (k key) dst() uint32   { return uint32(k.addrs) }
func (k key) sport() uint16 { return uint16(k.ports >> 16) }
func (k key) dport() uint16 { return uint16(k.ports) }

func (k *key) setSrc(v uint32)   { k.addrs = uint64(v)<<32 | k.addrs&0xffffffff }
func (k *key) setSport(p uint16) { k.ports = uint32(p)<<16 | k.ports&0xffff }

// setDst sets the destination address and port.
func (k *key) setDst(v uint32, p uint16) {
	k.addrs = k.addrs&^0xffffffff | uint64(v)
	k.ports = k.ports&^0xffff | uint32(p)
}

func (k key) invert() key {
	return key{addrs: bits.RotateLeft64(k.addrs, 32), ports: bits.RotateLeft32(k.ports, 16), proto: k.proto}
}

func (k key) tuple() Tuple {
	return Tuple{Proto: k.proto, Src: netip.AddrPortFrom(addr4(k.src()), k.sport()), Dst: netip.AddrPortFrom(addr4(k.dst()), k.dport())}
}

func ip4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (t Tuple) key() (key, error) {
	if !t.Src.Addr().Is4() || !t.Dst.Addr().Is4() {
		return key{}, fmt.Errorf("tuple %v: only IPv4 is modelled", t)
	}
	if t.Proto != TCP && t.Proto != UDP {
		return key{}, fmt.Errorf("tuple %v: only tcp and udp are modelled", t)
	}
	return mkKey(ip4(t.Src.Addr()), ip4(t.Dst.Addr()), t.Src.Port(), t.Dst.Port(), t.Proto), nil
}
