// Package tsoffset tells whether the kernel's TCP timestamp offset depends
// on a connection's ports.
//
// Since 4.12 Linux adds a keyed hash of the connection's addresses to the
// timestamps (TSval) it sends, so that the clock of a host is not exposed.
// Commit 165573e41f2f "tcp: secure_seq: add back ports to TS offset" (7.0-rc3,
// CVE-2026-23247; in upstream stable 6.12.94 and 6.1.191, and so in Debian's
// 6.12.94-1 and 6.1.192-1) hashes the ports too: two connections from one
// address to one server carry unrelated TSvals. Behind a NAT that maps
// connections with different original source ports onto one tuple while the
// server holds that tuple in TIME_WAIT, the second SYN's TSval is then lower
// than the last the server saw about half of the time, and the server's PAWS
// check rejects it (KERNEL.md §8).
//
// The kernel's version says little: distributions backport the change
// (Debian 6.1.192 has it, 6.1.190 does not) and vendors patch their own. So
// the answer comes from behaviour first: Probe (Linux, CAP_SYS_ADMIN and
// CAP_NET_ADMIN) sends SYNs from a few source ports of one address to one
// server inside a throwaway network namespace, records their TSvals (ParseSYN
// reads them off the wire) and Detect compares them. ByVersion is the
// fallback for a kernel that cannot be probed (a dump audited elsewhere):
// it knows the releases named above and says "unknown" for the rest.
package tsoffset
