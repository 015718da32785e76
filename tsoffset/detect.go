package tsoffset

import (
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// Kind is how a kernel offsets TCP timestamps.
type Kind string

// The kinds Detect tells apart.
const (
	// PerPort: the offset hashes addresses and ports (165573e41f2f):
	// connections from one address to one server with different source
	// ports carry unrelated TSvals.
	PerPort Kind = "per-port"
	// PerAddress: the offset hashes the addresses only (4.12 to 6.x
	// without the backport), or is 0 (net.ipv4.tcp_timestamps=2): one
	// address's connections to one server share a clock.
	PerAddress Kind = "per-address"
	// NoTimestamps: the SYNs carry no timestamp option
	// (net.ipv4.tcp_timestamps=0): there is no PAWS to fail.
	NoTimestamps Kind = "no-timestamps"
	// Unknown: not enough evidence, or not probed.
	Unknown Kind = "unknown"
)

// Sample is one recorded SYN: where it went from and to, when it was sent,
// and its timestamp option.
type Sample struct {
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
	At    time.Time      `json:"at"`
	HasTS bool           `json:"has_ts"`
	TSval uint32         `json:"tsval"`
}

// Threshold is the largest difference of two clock-corrected TSvals that
// Detect still reads as one offset. The timestamp clock ticks in ms (or µs
// on routes with the usec_ts feature), so over a probe of under a second
// one offset moves by less than 10⁶ ticks; two offsets drawn from a keyed
// hash differ by less than 2²⁰ with probability 2⁻¹¹ per pair.
const Threshold = 1 << 20

// Detection is Detect's verdict with its evidence.
type Detection struct {
	Kind Kind `json:"kind"`
	// Pairs is the number of SYN pairs compared: same source address and
	// destination, different source ports.
	Pairs int `json:"pairs"`
	// Spread is the largest |difference| of clock-corrected TSvals over
	// those pairs, in timestamp ticks.
	Spread  uint32   `json:"spread"`
	Samples []Sample `json:"samples,omitempty"`
	Reason  string   `json:"reason"`
}

// Detect reads how the kernel that sent samples offsets TCP timestamps.
// SYNs from one address to one destination are compared pairwise across
// different source ports after taking out the time between them (TSval
// minus the send time in ms): a pair further apart than Threshold means
// per-port offsets; every pair within it means one offset per address
// pair. Samples without a timestamp option, all of them, mean
// NoTimestamps; no pair of different ports means Unknown.
func Detect(samples []Sample) Detection {
	d := Detection{Kind: Unknown, Samples: samples}
	groups := map[[2]netip.AddrPort][]Sample{}
	withTS := 0
	for _, s := range samples {
		if !s.HasTS {
			continue
		}
		withTS++
		k := [2]netip.AddrPort{netip.AddrPortFrom(s.Src.Addr(), 0), s.Dst}
		groups[k] = append(groups[k], s)
	}
	if len(samples) > 0 && withTS == 0 {
		d.Kind, d.Reason = NoTimestamps, fmt.Sprintf("none of %d SYNs carries a timestamp option", len(samples))
		return d
	}
	keys := make([][2]netip.AddrPort, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0].Compare(keys[j][0]) < 0 || keys[i][0] == keys[j][0] && keys[i][1].Compare(keys[j][1]) < 0
	})
	for _, k := range keys {
		g := groups[k]
		for i := range g {
			for j := i + 1; j < len(g); j++ {
				if g[i].Src.Port() == g[j].Src.Port() {
					continue
				}
				d.Pairs++
				d.Spread = max(d.Spread, offsetGap(g[i], g[j]))
			}
		}
	}
	switch {
	case d.Pairs == 0:
		d.Reason = "no two SYNs from one address to one server with different source ports"
	case d.Spread > Threshold:
		d.Kind = PerPort
		d.Reason = fmt.Sprintf("SYNs from one address to one server differ by up to %d timestamp ticks once the time between them is taken out (%d pairs of different source ports): the offset depends on the ports", d.Spread, d.Pairs)
	default:
		d.Kind = PerAddress
		d.Reason = fmt.Sprintf("SYNs from one address to one server with different source ports share one offset within %d ticks (%d pairs)", d.Spread, d.Pairs)
	}
	return d
}

// offsetGap is |(a.TSval - a.At) - (b.TSval - b.At)| in timestamp ticks,
// time taken as ms, modulo 2³².
func offsetGap(a, b Sample) uint32 {
	dt := uint32(b.At.Sub(a.At).Milliseconds())
	gap := int32(b.TSval - a.TSval - dt)
	if gap < 0 {
		return uint32(-int64(gap))
	}
	return uint32(gap)
}
