package natmodel

import (
	"fmt"
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

// key is a Tuple in host order, comparable and cheap to hash.
type key struct {
	src, dst     uint32
	sport, dport uint16
	proto        Proto
}

func (k key) invert() key {
	return key{src: k.dst, dst: k.src, sport: k.dport, dport: k.sport, proto: k.proto}
}

func (k key) tuple() Tuple {
	return Tuple{Proto: k.proto, Src: netip.AddrPortFrom(addr4(k.src), k.sport), Dst: netip.AddrPortFrom(addr4(k.dst), k.dport)}
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
	return key{src: ip4(t.Src.Addr()), dst: ip4(t.Dst.Addr()), sport: t.Src.Port(), dport: t.Dst.Port(), proto: t.Proto}, nil
}
