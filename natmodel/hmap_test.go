package natmodel

import (
	"math/rand/v2"
	"testing"
)

// testKeys stores the key of value v at index v.
type testKeys [][2]uint64

func (k *testKeys) keyOf(v int32) (uint64, uint32) { return (*k)[v][0], uint32((*k)[v][1]) }

// hmap agrees with a Go map under random puts and deletes. Values are
// indexes into the key list, as in the Table (the value names the entry
// that holds the key).
func TestHmapMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var keys testKeys
	m := newHmap(&keys)
	ref := map[[2]uint64]int32{}
	for i := 0; i < 200000; i++ {
		a, b := uint64(r.IntN(3000)), uint64(r.IntN(7)+1)
		k := [2]uint64{a, b}
		switch r.IntN(3) {
		case 0, 1:
			keys = append(keys, k)
			v := int32(len(keys) - 1)
			m.put(a, uint32(b), v)
			ref[k] = v
		case 2:
			m.del(a, uint32(b))
			delete(ref, k)
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
