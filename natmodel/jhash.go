package natmodel

import "math/bits"

// jhashInitval is JHASH_INITVAL from include/linux/jhash.h.
const jhashInitval = 0xdeadbeef

// jhashAddr is find_best_ips_proto's jhash2((u32 *)&tuple->src.u3, 4,
// initval) for an IPv4 source: union nf_inet_addr is four words, the address
// and three zeros, so the kernel hashes 16 bytes (include/linux/jhash.h).
func jhashAddr(src, initval uint32) uint32 {
	a := uint32(jhashInitval) + 4<<2 + initval
	b, c := a, a
	// one full block of three words: src, 0, 0
	a += src
	a, b, c = jhashMix(a, b, c)
	// the fourth word, 0, and the final mix
	return jhashFinal(a, b, c)
}

// jhashMix is __jhash_mix.
func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

// jhashFinal is __jhash_final, returning c.
func jhashFinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// reciprocalScale is reciprocal_scale() from include/linux/kernel.h: maps val
// into [0, epRO) without a division.
func reciprocalScale(val, epRO uint32) uint32 {
	return uint32((uint64(val) * uint64(epRO)) >> 32)
}

// raw32 returns the 32-bit word the kernel reads when it casts a big-endian
// IPv4 address to u32 on a little-endian CPU (x86, arm64).
func raw32(hostOrder uint32) uint32 { return bits.ReverseBytes32(hostOrder) }

// mix64 is a keyed 64-bit finaliser (splitmix64) standing in for the kernel's
// siphash-based secure_* functions: the model only needs "the same inputs give
// the same output, different inputs look independent".
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
