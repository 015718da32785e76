// Package trace names the exact connections that lost a SYN to the SNAT
// source-port race, as it happens, with eBPF.
//
// Conntrack counters (insert_failed, drop) say that SYNs were dropped, not
// which: the kernel sends no conntrack event for an entry that failed to
// confirm, and packet captures miss the drop point. The drop itself is
// visible to eBPF: __nf_conntrack_confirm returns NF_DROP for the SYN whose
// REPLY tuple another CPU confirmed first, with the unconfirmed, source-NATed
// conntrack still attached to the skb, and nf_hook_slow then frees the skb
// through skb:kfree_skb with reason SKB_DROP_REASON_NETFILTER_DROP.
//
// A [Tracer] attaches three programs (see bpf/trace.bpf.c):
//
//   - fexit on __nf_conntrack_confirm, when the kernel allows it: every SYN
//     that failed to confirm, classified [KindSNATClash] when source NATed;
//   - tp_btf skb:kfree_skb: every other netfilter drop of a TCP SYN
//     ([KindOtherDrop]); without the fexit program it also classifies the
//     race from the conntrack left on the skb ([ModeTracepoint]);
//   - tp_btf tcp:tcp_retransmit_skb: SYN retransmissions per destination in
//     every network namespace, the 1 s delays the clients paid.
//
// Kernel numbers that vary between versions, such as the drop reason, are
// read from the running kernel's BTF by name when the tracer starts. The
// programs are compiled ahead of time with bpf2go (CO-RE), so building
// snatrace needs no clang. Nothing is pinned: closing the tracer, or the
// process exiting, detaches and frees everything.
package trace
