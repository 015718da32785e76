package sim

import (
	"math/bits"

	"github.com/snatrace/snatrace/internal/hugepage"
)

// portBits is the source ports one pod holds towards one server: in use,
// or in the pod's TIME_WAIT. A port is set when a connect() takes it and
// cleared when the connect fails or its TIME_WAIT ends, so the choosers
// scan 64 ports a word instead of asking a map port by port (a pod that has
// made 15,000 connections to one server in its TIME_WAIT scans thousands of
// ports per connect, as the kernel does).
type portBits [1 << 16 / 64]uint64

func (b *portBits) has(p uint16) bool { return b[p>>6]&(1<<(p&63)) != 0 }
func (b *portBits) set(p uint16)      { b[p>>6] |= 1 << (p & 63) }
func (b *portBits) clear(p uint16)    { b[p>>6] &^= 1 << (p & 63) }

// Every other bit, from bit 0 and from bit 1.
const (
	evenBits = 0x5555555555555555
	oddBits  = 0xaaaaaaaaaaaaaaaa
)

// firstFree returns k, the first of the n ports p, p+step, p+2·step, …
// (step 1 or 2; all within 0..65535) that is free, and whether there is
// one.
func (b *portBits) firstFree(p, n, step uint32) (uint32, bool) {
	end := p + step*n // one past the last port
	for q := p; q < end; {
		w := ^b[q>>6] >> (q & 63) // free ports from q, in the low bits
		if step == 2 {
			w &= evenBits
		}
		if left := end - q; left < 64 {
			w &= 1<<left - 1
		}
		if w != 0 {
			return (q - p + uint32(bits.TrailingZeros64(w))) / step, true
		}
		// Next word, on the same parity.
		q += 64 - q&63
		if step == 2 && q&1 != p&1 {
			q++
		}
	}
	return 0, false
}

// portPool hands out portBits from arrays of up to 1,024 (8 MiB, marked for
// huge pages): a run with thousands of pod × server pairs reads their
// bitsets at random.
type portPool struct {
	free []portBits
	left int // pairs not yet given a bitset
}

func (p *portPool) get() *portBits {
	if len(p.free) == 0 {
		p.free = make([]portBits, max(1, min(1024, p.left)))
		hugepage.Slice(p.free)
	}
	b := &p.free[0]
	p.free = p.free[1:]
	p.left--
	return b
}
