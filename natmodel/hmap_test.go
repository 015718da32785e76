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

// delVal and slotOf find a key's slot by its value alone, and the map still
// agrees with a Go map afterwards, across growth past the sparse size.
func TestHmapDelVal(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var keys testKeys
	m := newHmap(&keys)
	ref := map[[2]uint64]int32{}
	for i := 0; i < 100000; i++ {
		a, b := uint64(r.IntN(20000)), uint64(r.IntN(3)+1)
		k := [2]uint64{a, b}
		v, in := ref[k]
		switch {
		case !in:
			keys = append(keys, k)
			v = int32(len(keys) - 1)
			m.put(a, uint32(b), v)
			ref[k] = v
		case r.IntN(2) == 0:
			if _, ok := m.slotOf(a, uint32(b), int32(len(keys))); ok {
				t.Fatalf("step %d: slotOf found a value never stored", i)
			}
			m.delVal(a, uint32(b), v)
			delete(ref, k)
		}
	}
	if m.n != len(ref) {
		t.Fatalf("n %d, want %d", m.n, len(ref))
	}
	if m.full(m.n) {
		t.Fatalf("%d keys in %d slots: over the load limit", m.n, len(m.slots))
	}
	for k, v := range ref {
		if got, ok := m.get(k[0], uint32(k[1])); !ok || got != v {
			t.Fatalf("get %v = %d %v, want %d", k, got, ok, v)
		}
	}
}

// Small tables grow at 1/8 full, large ones at 1/2.
func TestHmapLoad(t *testing.T) {
	for _, tc := range []struct {
		slots, keys int
		full        bool
	}{
		{1 << 10, 128, false},
		{1 << 10, 129, true},
		{smallSlots / 2, smallSlots / 16, false},
		{smallSlots / 2, smallSlots/16 + 1, true},
		{smallSlots, smallSlots / 2, false},
		{smallSlots, smallSlots/2 + 1, true},
	} {
		m := hmap{slots: make([]slot, tc.slots)}
		if got := m.full(tc.keys); got != tc.full {
			t.Errorf("%d keys in %d slots: full %v, want %v", tc.keys, tc.slots, got, tc.full)
		}
	}
}
