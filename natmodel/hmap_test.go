package natmodel

import (
	"math/rand/v2"
	"testing"
)

// hmap agrees with a Go map under random puts and deletes.
func TestHmapMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	m := newHmap()
	ref := map[[2]uint64]int32{}
	key := func(a uint64, b uint32) [2]uint64 { return [2]uint64{a, uint64(b)} }
	for i := 0; i < 200000; i++ {
		a, b := uint64(r.IntN(3000)), uint32(r.IntN(7)+1)
		switch r.IntN(3) {
		case 0, 1:
			v := int32(r.Int32())
			m.put(a, b, v)
			ref[key(a, b)] = v
		case 2:
			m.del(a, b)
			delete(ref, key(a, b))
		}
		if i%1000 == 0 {
			if m.n != len(ref) {
				t.Fatalf("step %d: n %d, want %d", i, m.n, len(ref))
			}
			for k, v := range ref {
				if got, ok := m.get(k[0], uint32(k[1])); !ok || got != v {
					t.Fatalf("step %d: get %v = %d %v, want %d", i, k, got, ok, v)
				}
			}
		}
	}
}
