package lab

import (
	"fmt"
	"math"
)

// The short workload (Short) is HTTP/1.0-style and health-check traffic:
// each connection sends one byte, the server answers one byte and closes
// first, so the server holds every connection's 4-tuple in TIME_WAIT for
// 60 s. When the NAT maps a new connection with another original source
// port onto a tuple the server still holds, and the kernel's TCP timestamp
// offset depends on the ports (165573e41f2f, 7.0 and stable backports), the
// new SYN's TSval is unrelated to the last one the server saw: if lower, the
// server's PAWS check rejects it (TcpExt PAWSTimewait from 6.16, PAWSEstab
// before) and the client retransmits (ms later, or 2 s when its retry is
// rejected again). Without a Rate each client thread runs its connections
// one after another (closed loop: at most one per CPU in flight, a delayed
// connection holds up its thread); with a Rate each connection leaves at
// its planned time from its CPU's thread and ends on its own (open loop: a
// delayed connection holds up nothing). Each mode and backend gets its own server
// port (Dport + its index) and its own pods, so that one mode's TIME_WAIT
// sockets and conntrack entries never meet another's tuples: the kernel
// keeps a source ip:port's NAT mapping for its flows to other destinations
// (the bysource hash of get_unique_tuple), so pods shared between modes
// would carry one mode's remapped ports into the other's flows.

// validateShort checks a short workload: Rate 0 is the driver's full rate.
func (w WorkloadConfig) validateShort() error {
	if w.Rate < 0 || w.Rate > 1e6 || math.IsNaN(w.Rate) {
		return fmt.Errorf("rate: %v connections/s is out of range [0, 1000000] (0: as fast as connections end)", w.Rate)
	}
	if w.Poisson && w.Rate == 0 {
		return fmt.Errorf("poisson: Poisson arrivals need a --rate")
	}
	return nil
}

// paced reports whether a workload's attempts carry their own start times.
func (w WorkloadConfig) paced() bool {
	return w.Name == Steady || w.Name == Short && w.Rate > 0
}

// topologyPods is the number of pod namespaces a run builds: Pods, or for
// a short run Pods per mode and backend.
func (c Config) topologyPods() int {
	if c.Workload.Name != Short {
		return c.Pods
	}
	return c.Pods * max(1, len(c.Modes)*len(c.Backends))
}
