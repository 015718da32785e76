package prefetch

import (
	"testing"
	"unsafe"
)

// Line changes nothing it is pointed at.
func TestLineChangesNothing(t *testing.T) {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i)
	}
	for i := 0; i < len(b); i += 64 {
		Line(unsafe.Pointer(&b[i]))
	}
	for i := range b {
		if b[i] != byte(i) {
			t.Fatalf("byte %d is %d after a prefetch", i, b[i])
		}
	}
}

func BenchmarkLine(b *testing.B) {
	buf := make([]byte, 64<<20)
	for i := 0; b.Loop(); i++ {
		Line(unsafe.Pointer(&buf[(i*4099*64)%len(buf)]))
	}
}
