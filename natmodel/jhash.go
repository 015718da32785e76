package natmodel

import "math/bits"

// jhashInitval is JHASH_INITVAL from include/linux/jhash.h.
const jhashInitval = 0xdeadbeef

// jhash1 is jhash2(k, 1, initval) from include/linux/jhash.h: Bob Jenkins'
// lookup3 final mix over one 32-bit word.
func jhash1(k, initval uint32) uint32 {
	a := uint32(jhashInitval) + 1<<2 + initval
	b, c := a, a
	a += k
	// __jhash_final(a, b, c)
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
