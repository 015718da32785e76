package sim

import (
	"math/rand/v2"
	"testing"
)

// naiveHashed is the kernel's __inet_hash_connect loop over one parity, as
// the simulator ran it port by port before the bitsets: the i of the free
// port found, its port, or ok false.
func naiveHashed(held *portBits, low, high, offset uint32) (i, port uint32, ok bool) {
	remaining := high - low
	if remaining > 1 {
		remaining &^= 1
	}
	port = low + offset
	for i = 0; i < remaining; i, port = i+2, port+2 {
		if port >= high {
			port -= remaining
		}
		if !held.has(uint16(port)) {
			return i, port, true
		}
	}
	return 0, 0, false
}

// TestScanRangeIsTheKernelLoop checks the word-at-a-time scans against the
// kernel's port-at-a-time loops on random port sets, ranges (odd, even, one
// port, the whole space) and offsets.
func TestScanRangeIsTheKernelLoop(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 5000; trial++ {
		var held portBits
		low := uint32(rnd.IntN(65535)) + 1
		high := low + 1 + uint32(rnd.IntN(int(65536-low)))
		switch {
		case trial%50 == 0:
			low, high = 1, 65536
		case trial%7 == 0 && low < 65533:
			high = low + 1 + uint32(rnd.IntN(3)) // one to three ports
		}
		fill := rnd.Float64()
		for p := low; p < high; p++ {
			if rnd.Float64() < fill {
				held.set(uint16(p))
			}
		}
		span := high - low
		remaining := span
		if remaining > 1 {
			remaining &^= 1
		}
		offset := uint32(rnd.IntN(int(remaining))) &^ 1
		for pass := uint32(0); pass < 2; pass++ {
			wi, wport, wok := naiveHashed(&held, low, high, offset+pass)
			k, ok := scanRange(&held, low, offset+pass, span, remaining, (remaining+1)/2, 2)
			if ok != wok || (ok && (2*k != wi || wrapped(low, offset+pass, span, remaining, k) != wport)) {
				t.Fatalf("range %d-%d offset %d: scan found %v k=%d port %d, the loop %v i=%d port %d",
					low, high, offset+pass, ok, k, wrapped(low, offset+pass, span, remaining, k), wok, wi, wport)
			}
		}
		start := uint32(rnd.IntN(int(span)))
		k, ok := scanRange(&held, low, start, span, span, span, 1)
		wk, wok := uint32(0), false
		for i := uint32(0); i < span; i++ {
			if !held.has(uint16(low + (start+i)%span)) {
				wk, wok = i, true
				break
			}
		}
		if ok != wok || (ok && k != wk) {
			t.Fatalf("range %d-%d from %d: sequential scan %v %d, loop %v %d", low, high, start, ok, k, wok, wk)
		}
	}
}
