// Package prefetch asks the CPU to start loading a cache line that code
// will read soon, without waiting for it.
//
// The simulator's conntrack model reads tens of MiB of hash slots at
// random, and most of its time is spent waiting for those reads: a lookup
// it can name well before it makes it (the first slots of a new
// connection's lookups, known when the connection starts) overlaps that
// wait with other work and with other such reads. Go has no prefetch
// intrinsic outside its runtime, so on amd64 this is one instruction of
// assembly (PREFETCHT0); elsewhere Line does nothing.
package prefetch
