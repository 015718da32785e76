// Package natmodel is a pure, deterministic model of how Linux chooses the
// source of a SNATed connection and how conntrack then confirms it, per kernel
// era. It exists so that the SNAT source-port race can be studied for kernels,
// loads and NAT modes that no lab machine has.
//
// The model follows the kernel functions step by step (net/netfilter/
// nf_nat_core.c and nf_conntrack_core.c; see KERNEL.md in the design notes):
//
//   - get_unique_tuple: the original tuple if it is already in range, the
//     bysource reuse of an existing mapping, find_best_ips_proto (jhash of the
//     addresses for multi-address ranges, persistent), port preservation, and
//     the single-port range that is returned even when taken;
//   - nf_nat_l4proto_unique_tuple: port classes, the u16 start offset that
//     wraps at 65536, 128 attempts halved in rounds (at most 248 tries), the
//     last tried port kept on failure; before 5.0 the global per-protocol rover,
//     the keyed hash of `random` and a full-range scan;
//   - nf_nat_used_tuple_harder (6.5+): TIME_WAIT eviction in the last 32 tries;
//   - __nf_conntrack_confirm and nf_ct_resolve_clash: unconfirmed entries are
//     invisible to other CPUs' searches, a clash is found only at confirm, TCP
//     clashes are never resolved, UDP resolution and the counters follow each
//     era's rules.
//
// A Table is one network namespace's conntrack table plus the NAT bysource
// hash. It is not safe for concurrent use: the race between CPUs is modelled by
// the order in which the caller interleaves SNAT and Confirm calls, as the
// simulator in package sim does. Randomness (a seeded math/rand/v2 generator)
// and time (a virtual clock set with SetTime) are injected; the same inputs
// always give the same outputs. Only IPv4 is modelled: the port choice is the
// same code for IPv6.
package natmodel
