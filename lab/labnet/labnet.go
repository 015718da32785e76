// Package labnet is the address plan of the lab's network, shared with the
// simulator so that address-dependent kernel choices (the jhash of a
// multi-address SNAT range, the keyed port hashes) come out the same in a
// simulated run as in the lab run it predicts.
//
// Pods share 10.98.0.0/16 behind the node's bridge (10.98.0.1): pod i is
// 10.98.0.0 + i + 2 (the simulator's larger pod counts carry on into
// 10.99.0.0 and beyond). Server k sits on 198.51.(100+k).0/24 (TEST-NET-2 and
// beyond, never routed outside the lab): the node has .1 there, the server
// .2; masquerade towards server k picks the node's .1.
package labnet

import (
	"fmt"
	"net/netip"
)

// The pods' network and the node's address on it.
var (
	PodNet   = netip.MustParsePrefix("10.98.0.0/16")
	BridgeIP = netip.MustParseAddr("10.98.0.1")
)

// PodAddr returns the address of pod i (0-based).
func PodAddr(i int) netip.Addr {
	n := i + 2 // .0.0 is the network, .0.1 the bridge
	return netip.AddrFrom4([4]byte{10, byte(98 + n>>16), byte(n >> 8), byte(n)})
}

// uplinkAddr is host on server k's uplink subnet.
func uplinkAddr(k, host int) netip.Addr {
	n := 51*256 + 100 + k
	return netip.AddrFrom4([4]byte{198, byte(n >> 8), byte(n), byte(host)})
}

// ServerAddr returns the address of server k.
func ServerAddr(k int) netip.Addr { return uplinkAddr(k, 2) }

// NodeAddr returns the node's address towards server k: what masquerade
// picks for traffic to it.
func NodeAddr(k int) netip.Addr { return uplinkAddr(k, 1) }

// UplinkNet returns server k's subnet.
func UplinkNet(k int) netip.Prefix { return netip.PrefixFrom(NodeAddr(k), 24).Masked() }

// UplinkName is the node's interface towards server k.
func UplinkName(k int) string { return fmt.Sprintf("up%d", k) }

// SNATHost reports whether a is an address an snat rule of the lab may use:
// a host of the first uplink's subnet other than the server, the network and
// the broadcast address (the lab adds it to the node's uplink).
func SNATHost(a netip.Addr) bool {
	subnet := UplinkNet(0)
	b := subnet.Addr().As4()
	b[3] = 255
	return subnet.Contains(a) && a != ServerAddr(0) && a != subnet.Addr() && a != netip.AddrFrom4(b)
}

// Workload names, the same in the lab and the simulator: same-port bursts
// (every pod connects from one source port per burst), ephemeral bursts
// (ports chosen by each pod's kernel), steady arrivals at a rate, and short
// connections that exchange data and that the server closes first (so the
// server holds each NAT tuple in TIME_WAIT).
const (
	SamePort  = "same-port"
	Ephemeral = "ephemeral"
	Steady    = "steady"
	Short     = "short"
)

// Workloads lists the workload names.
var Workloads = []string{SamePort, Ephemeral, Steady, Short}

// Pairs is the UDP workload of glibc-like query pairs: one socket sends an A
// and an AAAA query at the same instant from two CPUs (UDP only).
const Pairs = "pairs"

// UDPWorkloads lists the workload names a UDP run takes: same-port and
// ephemeral bursts of single queries, and pairs.
var UDPWorkloads = []string{SamePort, Ephemeral, Pairs}

// ServiceAddr is the lab's cluster-DNS service address on the node (the
// ClusterIP kube-dns gets by default): queries to it are DNATed to one of the
// servers at random, as kube-proxy does. Nothing owns it; it only exists in
// the node's DNAT rules.
var ServiceAddr = netip.MustParseAddr("10.96.0.10")
