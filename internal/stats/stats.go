// Package stats holds the small statistics the lab and the simulator report
// alike, so that a lab run and its prediction are summarised the same way:
// Wilson intervals for clash rates and nearest-rank latency summaries.
package stats

import (
	"math"
	"slices"
)

// Wilson returns the 95% Wilson score interval of k successes in n trials.
// It is sound at k = 0, unlike the normal approximation: the upper bound is
// then about 3.8/n. With n = 0 it returns the whole interval [0, 1].
func Wilson(k, n uint64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959963984540054
	p := float64(k) / float64(n)
	nf := float64(n)
	den := 1 + z*z/nf
	centre := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return math.Max(0, centre-half), math.Min(1, centre+half)
}

// Latency summarises connection setup latencies in milliseconds, each
// rounded to the microsecond.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summarize returns the nearest-rank p50 and p99, the maximum and the mean of
// latencies given in milliseconds. It sorts ms in place; an empty slice gives
// the zero Latency.
func Summarize[T ~float32 | ~float64](ms []T) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	slices.Sort(ms)
	var sum float64
	for _, l := range ms {
		sum += float64(l)
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ms)))) - 1
		return round3(float64(ms[max(0, min(i, len(ms)-1))]))
	}
	return Latency{P50: q(0.5), P99: q(0.99), Max: round3(float64(ms[len(ms)-1])), Mean: round3(sum / float64(len(ms)))}
}

func round3(x float64) float64 { return math.Round(x*1e3) / 1e3 }

// Hist collects latencies, like a slice for Summarize, in memory bounded
// by the number of distinct microsecond values rather than of latencies:
// a simulation of millions of connections has a few thousand. Its Latency
// is the one Summarize gives for the same values, up to the order of the
// mean's floating-point sum.
type Hist struct {
	us  map[int64]uint64 // latency in µs (rounded) -> count
	n   uint64
	sum float64
}

// Add records one latency in milliseconds.
func (h *Hist) Add(ms float64) {
	if h.us == nil {
		h.us = map[int64]uint64{}
	}
	h.us[int64(math.Round(ms*1e3))]++
	h.n++
	h.sum += ms
}

// Latency returns the nearest-rank p50 and p99, the maximum and the mean.
func (h *Hist) Latency() Latency {
	if h.n == 0 {
		return Latency{}
	}
	keys := make([]int64, 0, len(h.us))
	for k := range h.us {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	q := func(p float64) float64 {
		rank := uint64(max(1, int64(math.Ceil(p*float64(h.n))))) // 1-based
		var seen uint64
		for _, k := range keys {
			if seen += h.us[k]; seen >= rank {
				return float64(k) / 1e3
			}
		}
		return float64(keys[len(keys)-1]) / 1e3
	}
	return Latency{P50: q(0.5), P99: q(0.99), Max: float64(keys[len(keys)-1]) / 1e3, Mean: round3(h.sum / float64(h.n))}
}
