package natmodel

import (
	"fmt"
	"strings"

	"github.com/snatrace/snatrace/kernel"
)

// Era is the kernel version whose NAT and conntrack behaviour is modelled.
// Only the major and minor numbers matter; behaviour changes at the versions
// named by the methods below.
type Era struct {
	Major, Minor int
}

// Named eras, by the first upstream release that behaves that way.
var (
	// Legacy is the behaviour before 5.0 (4.19.0 upstream): the global port
	// rover, `random` as a keyed hash, full-range scans.
	Legacy = Era{4, 19}
	// Era50 is 5.0: random start offset in every mode, 128 attempts halved.
	Era50 = Era{5, 0}
	// Era65 is 6.5: TIME_WAIT eviction in the last 32 tries of each round.
	Era65 = Era{6, 5}
)

// ParseEra parses "legacy", or a kernel version such as "4.19", "5.0",
// "6.5", "6.18.44", "6.1.0-13-amd64" or "5.15.153.1-microsoft-standard-WSL2"
// (kernel.ParseVersion). Versions before 3.13 (no fully-random) and
// implausible ones (10.0 and later) are rejected.
func ParseEra(s string) (Era, error) {
	if strings.EqualFold(strings.TrimSpace(s), "legacy") {
		return Legacy, nil
	}
	v, err := kernel.ParseVersion(s)
	if err != nil { // kernel's message names the version, not the era flag
		return Era{}, fmt.Errorf("parsing era %q: want legacy or a kernel version like 5.0 or 6.5", s)
	}
	e := Era{v.Major, v.Minor}
	if e.Before(Era{3, 13}) || v.Major > 9 || v.Minor > 99 {
		return Era{}, fmt.Errorf("parsing era %q: kernels before 3.13 (or after 9.x) are not modelled", s)
	}
	return e, nil
}

// ClassOf returns the named era (Legacy, Era50 or Era65) whose port search a
// kernel of version v runs, for any version: kernels older than the model
// (3.10) are Legacy.
func ClassOf(v kernel.Version) Era {
	switch {
	case !v.AtLeast(5, 0):
		return Legacy
	case !v.AtLeast(6, 5):
		return Era50
	}
	return Era65
}

// String returns "legacy" for Legacy and "major.minor" otherwise.
func (e Era) String() string {
	if e == Legacy {
		return "legacy"
	}
	return fmt.Sprintf("%d.%d", e.Major, e.Minor)
}

// Before reports whether e is older than o.
func (e Era) Before(o Era) bool {
	return e.Major < o.Major || (e.Major == o.Major && e.Minor < o.Minor)
}

// Rover reports whether the port search uses the global per-protocol rover,
// the keyed hash for `random` and a full-range scan ("netfilter: nat: remove
// l4 protocol port rovers" and "limit port clash resolution attempts", 5.0).
func (e Era) Rover() bool { return e.Before(Era50) }

// ClashMerge reports whether a UDP clash at confirm can be resolved at all:
// the packet is attached to the winning entry when the winner was not
// NATed ("netfilter: conntrack: introduce clash resolution on insertion
// race", 71d8c47fc653, 4.6). Before, every clash dropped the packet.
func (e Era) ClashMerge() bool { return !e.Before(Era{4, 6}) }

// MatchMerge reports whether a UDP clash is also merged when the two
// entries are identical in both directions although NATed (nf_ct_match:
// "netfilter: nf_conntrack: resolve clash for matching conntracks",
// ed07d9a021df, 4.19): parallel packets of one socket through the same
// port-preserving SNAT.
func (e Era) MatchMerge() bool { return !e.Before(Era{4, 19}) }

// MergeReverse reports the 6.12 rules of __nf_ct_resolve_clash
// (nf_ct_can_merge): entries are merged only when they match, or match with
// directions swapped ("netfilter: conntrack: add clash resolution for
// reverse collisions"); a winner merely not NATed no longer merges a loser
// whose reply differs (that loser goes to the 5.6 reply-only insertion).
// The companion "netfilter: nf_nat: don't try nat source port reallocation
// for reverse dir clash" (nf_nat_used_tuple_new) and its 2025 fix "also
// check reverse tuple to obtain clashing entry" only concern flows no NAT
// rule changed, which this model does not create.
func (e Era) MergeReverse() bool { return !e.Before(Era{6, 12}) }

// SameFlowNotTaken reports whether nf_conntrack_tuple_taken ignores an entry
// whose original tuple equals the new one's (same flow on two CPUs), and
// clash resolution accepts entries that match in both directions (5.0).
func (e Era) SameFlowNotTaken() bool { return !e.Before(Era50) }

// ResolveHarder reports whether a UDP clash in the original direction only is
// resolved by inserting the loser with a 1 s timeout (5.6).
func (e Era) ResolveHarder() bool { return !e.Before(Era{5, 6}) }

// ClashResolveCounter reports whether resolved clashes count in clash_resolve
// instead of insert_failed (5.10).
func (e Era) ClashResolveCounter() bool { return !e.Before(Era{5, 10}) }

// EvictTimeWait reports whether the last tries of a port search may evict a
// colliding TCP entry in TIME_WAIT (nf_nat_used_tuple_harder, 6.5).
func (e Era) EvictTimeWait() bool { return !e.Before(Era65) }

// SynLinearTimeouts is the default of net.ipv4.tcp_syn_linear_timeouts
// (6.5, "tcp: make the first N SYN RTO backoffs linear"): a connect()'s
// first 4 SYN timeouts after the first keep the initial RTO (SYNs at 0, 1,
// 2, 3, 4, 5, 7, 11 ... s), and it may retransmit 4 more times. A pod's
// connect() runs on the node's kernel, so the era is also the client's.
func (e Era) SynLinearTimeouts() int {
	if !e.HasSynLinearTimeouts() {
		return 0
	}
	return 4
}

// HasSynLinearTimeouts reports whether the era's kernel has the
// net.ipv4.tcp_syn_linear_timeouts sysctl (6.5); before it every SYN
// timeout doubles the one before.
func (e Era) HasSynLinearTimeouts() bool { return !e.Before(Era65) }

// CountsInsert reports whether the `insert` counter is incremented on confirm.
// Modern kernels read 0 there (KERNEL.md §4); the model counts it before 5.0.
func (e Era) CountsInsert() bool { return e.Before(Era50) }
