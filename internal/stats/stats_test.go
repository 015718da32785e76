package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestWilson(t *testing.T) {
	for _, tt := range []struct {
		k, n   uint64
		lo, hi float64
	}{
		// Reference values from the closed form (Wilson 1927), z = 1.96.
		{0, 20000, 0, 0.000192},
		{708, 20708, 0.03180, 0.03675},
		{5, 10, 0.2366, 0.7634},
		{10, 10, 0.7225, 1},
	} {
		lo, hi := Wilson(tt.k, tt.n)
		if math.Abs(lo-tt.lo) > 5e-5 || math.Abs(hi-tt.hi) > 5e-5 {
			t.Errorf("Wilson(%d, %d) = %.5f..%.5f, want %.5f..%.5f", tt.k, tt.n, lo, hi, tt.lo, tt.hi)
		}
	}
	if lo, hi := Wilson(0, 0); lo != 0 || hi != 1 {
		t.Errorf("Wilson(0, 0) = %v..%v, want 0..1", lo, hi)
	}
}

func TestSummarize(t *testing.T) {
	ms := []float64{1000.0004, 0.02, 0.03, 0.01}
	got := Summarize(ms)
	want := Latency{P50: 0.02, P99: 1000, Max: 1000, Mean: 250.015}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if got := Summarize([]float32{}); got != (Latency{}) {
		t.Errorf("Summarize(empty) = %+v", got)
	}
	// 100 values 1..100: nearest rank p50 = 50, p99 = 99.
	var h []float32
	for i := 100; i >= 1; i-- {
		h = append(h, float32(i))
	}
	if got := Summarize(h); got.P50 != 50 || got.P99 != 99 || got.Max != 100 || got.Mean != 50.5 {
		t.Errorf("Summarize(1..100) = %+v", got)
	}
}

// TestHistIsSummarize feeds the same latencies to a Hist and to Summarize:
// p50, p99, max and mean agree.
func TestHistIsSummarize(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 99, 100, 101, 10000} {
		var h Hist
		ms := make([]float32, n)
		for i := range ms {
			v := float32(rnd.ExpFloat64() * 0.02)
			if rnd.IntN(20) == 0 {
				v += float32(1000 * (int(1) << rnd.IntN(3)))
			}
			ms[i] = v
			h.Add(float64(v))
		}
		if got, want := h.Latency(), Summarize(ms); got != want {
			t.Errorf("%d latencies: Hist %+v, Summarize %+v", n, got, want)
		}
	}
	var empty Hist
	if got := empty.Latency(); got != (Latency{}) {
		t.Errorf("empty Hist: %+v", got)
	}
}
