// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
//
// snatrace trace: attribute netfilter drops of TCP SYNs and UDP datagrams to
// the SNAT source-port race, and report the UDP clashes the kernel resolved.
//
// Four programs:
//   confirm_entry   fentry on __nf_conntrack_confirm: remembers, per CPU, the
//                   conntrack the skb carries in (confirm_exit compares).
//   confirm_exit    fexit on __nf_conntrack_confirm: a return of NF_DROP for a
//                   TCP SYN or a UDP datagram whose conntrack is source NATed
//                   is exactly the race's drop (the REPLY tuple was taken at
//                   confirm). A UDP datagram accepted with another conntrack
//                   than it came with was merged into the winner of a clash
//                   (nf_ct_resolve_clash); one whose conntrack has
//                   IPS_NAT_CLASH was inserted in its reply direction only
//                   (nf_ct_resolve_clash_harder, 5.6+).
//   kfree_skb       tp_btf on skb:kfree_skb: other netfilter drops of TCP SYNs
//                   and UDP datagrams;
//                   when confirm_exit is not attached, it also flags SYNs whose
//                   source-NATed conntrack was never inserted as candidates,
//                   which user space checks against the conntrack table.
//   retransmit      tp_btf on tcp:tcp_retransmit_skb: SYN retransmissions
//                   counted per destination, in every network namespace.
//
// Numbers that differ between kernels (the drop reason) are not compiled in:
// user space reads them from the kernel's BTF by name and writes them into
// the config map before attaching.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NF_DROP 0
#define NFCT_PTRMASK (~7UL)
#define IPS_SRC_NAT (1UL << 4)
#define IPS_NAT_CLASH (1UL << 12) // IPS_NAT_CLASH_BIT, the former IPS_UNTRACKED_BIT
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define AF_INET 2
#define AF_INET6 10
#define TCP_SYN_SENT 2
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

#define KIND_SNAT_CLASH 1
#define KIND_OTHER_DROP 2
#define KIND_CLASH_MERGED 3   // UDP: resolved, attached to the winning conntrack
#define KIND_CLASH_INSERTED 4 // UDP: resolved, inserted in the reply direction only
#define KIND_PAWS_TIMEWAIT 5  // TCP: a SYN a TIME_WAIT socket rejected by PAWS

#define SOURCE_CONFIRM 1
#define SOURCE_KFREE_SKB 2

// Indices of the stats array.
#define STAT_LOST 0
#define STAT_SYN_RETRANS 1
#define STAT_MAX 2

struct event {
	__u64 ts_ns;          // bpf_ktime_get_ns (CLOCK_MONOTONIC)
	__u64 ct_status;      // conntrack status bits, 0 without conntrack
	__u32 netns;          // network namespace inode
	__u32 cpu;
	__u32 reason;         // skb drop reason; 0 from confirm_exit
	__u8 kind;            // KIND_*
	__u8 source;          // SOURCE_*
	__u8 family;          // AF_INET or AF_INET6
	__u8 has_ct;          // 1 when orig/reply come from a conntrack
	__u8 orig_src[16];    // ORIGINAL tuple (pod ip:port -> dst:port)
	__u8 orig_dst[16];
	__u8 reply_src[16];   // REPLY tuple (dst:port -> nat ip:port)
	__u8 reply_dst[16];
	__be16 orig_sport;
	__be16 orig_dport;
	__be16 reply_sport;
	__be16 reply_dport;
	__u8 proto;           // IPPROTO_TCP or IPPROTO_UDP
	__u8 pad[7];
};

// Settings written by user space before the programs are attached. A map,
// not global variables: cilium/ebpf memory-maps data sections and unmaps them
// only when the Go garbage collector runs, which would keep them loaded after
// the tracer is closed.
struct tracer_config {
	__u32 reason_netfilter_drop; // SKB_DROP_REASON_NETFILTER_DROP in this kernel
	__u32 netns;                 // report drops in this namespace only; 0: all
	__u8 classify_in_tp;         // 1 when confirm_exit is not attached
	__u8 pad[3];
	// SKB_DROP_REASON_TCP_RFC7323_TW_PAWS (6.16+): a SYN a TIME_WAIT socket
	// rejected by PAWS; 0 when not asked for or the kernel has no such reason.
	__u32 reason_tw_paws;
};

struct dest_key {
	__u8 addr[16];
	__be16 port;
	__u8 family;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tracer_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// Never used: declares struct event in the object's BTF, so bpf2go generates
// its Go twin and a test can check the Go decoder's offsets against it. (A
// global variable would do too, but would add a data section; see config.)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} event_layout SEC(".maps");

// The last skb confirm_exit reported, per CPU, so kfree_skb does not report
// the same drop a second time (nf_hook_slow frees it right after confirm).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} claimed SEC(".maps");

// The conntrack each CPU's skb carried into __nf_conntrack_confirm, so
// confirm_exit can tell a UDP datagram merged into another conntrack. Confirm
// runs with bottom halves off: one call per CPU at a time.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} entry_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dest_key);
	__type(value, __u64);
} syn_retransmits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct nf_conn *skb_ct(struct sk_buff *skb)
{
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);
	return (struct nf_conn *)(nfct & NFCT_PTRMASK);
}

struct l4 {
	__u8 family;
	__u8 proto;   // IPPROTO_TCP or IPPROTO_UDP
	__u8 flags;   // TCP flags
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
};

// parse_l4 reads the IP and TCP or UDP headers of skb. It returns 0 for a
// TCP segment or UDP datagram (IPv4, or IPv6 without extension headers), -1
// otherwise.
static __always_inline int parse_l4(struct sk_buff *skb, struct l4 *out)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u8 vihl;
	__u32 thoff;

	if (bpf_probe_read_kernel(&vihl, 1, head + nh))
		return -1;
	if ((vihl >> 4) == 4) {
		__u8 proto;
		if (bpf_probe_read_kernel(&proto, 1, head + nh + 9))
			return -1;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			return -1;
		out->proto = proto;
		out->family = AF_INET;
		if (bpf_probe_read_kernel(out->saddr, 4, head + nh + 12))
			return -1;
		if (bpf_probe_read_kernel(out->daddr, 4, head + nh + 16))
			return -1;
		thoff = nh + (vihl & 0xf) * 4;
	} else if ((vihl >> 4) == 6) {
		__u8 next;
		if (bpf_probe_read_kernel(&next, 1, head + nh + 6))
			return -1;
		if (next != IPPROTO_TCP && next != IPPROTO_UDP)
			return -1;
		out->proto = next;
		out->family = AF_INET6;
		if (bpf_probe_read_kernel(out->saddr, 16, head + nh + 8))
			return -1;
		if (bpf_probe_read_kernel(out->daddr, 16, head + nh + 24))
			return -1;
		thoff = nh + 40;
	} else {
		return -1;
	}
	if (bpf_probe_read_kernel(&out->sport, 2, head + thoff))
		return -1;
	if (bpf_probe_read_kernel(&out->dport, 2, head + thoff + 2))
		return -1;
	if (out->proto == IPPROTO_TCP &&
	    bpf_probe_read_kernel(&out->flags, 1, head + thoff + 13))
		return -1;
	return 0;
}

// opens_flow reports whether the packet is one that creates a conntrack: a
// TCP SYN, or any UDP datagram (a UDP flow has no handshake; confirm only
// runs for the first datagram of a conntrack anyway).
static __always_inline bool opens_flow(const struct l4 *l4)
{
	if (l4->proto == IPPROTO_UDP)
		return true;
	return (l4->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

// never_inserted reports whether ct is not in the conntrack hash: until
// insertion, the REPLY hnnode.pprev holds the bucket hash that
// __nf_conntrack_alloc stashed there (a u32), not a kernel pointer. This holds
// for a conntrack that failed to confirm whatever the kernel does with
// IPS_CONFIRMED on that path (older kernels set it before the clash check,
// newer ones only after insertion).
static __always_inline bool never_inserted(struct nf_conn *ct)
{
	__u64 pprev = (__u64)BPF_CORE_READ(ct, tuplehash[1].hnnode.pprev);
	return (pprev >> 32) == 0;
}

static __always_inline __u32 skb_netns(struct sk_buff *skb, struct nf_conn *ct)
{
	__u32 inum = 0;
	if (ct)
		inum = BPF_CORE_READ(ct, ct_net.net, ns.inum);
	if (!inum)
		inum = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (!inum)
		inum = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	return inum;
}

// emit reports a drop unless it happened outside the namespace asked for; it
// returns whether it did.
static __always_inline bool emit(const struct tracer_config *cfg,
				 struct sk_buff *skb, struct nf_conn *ct,
				 const struct l4 *l4, __u8 kind, __u8 source,
				 __u32 reason, __u64 status)
{
	__u32 netns = skb_netns(skb, ct);
	struct event *e;

	if (cfg->netns && netns != cfg->netns)
		return false;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_LOST);
		return false;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns = netns;
	e->reason = reason;
	e->kind = kind;
	e->source = source;
	e->family = l4->family;
	e->proto = l4->proto;
	e->ct_status = status;
	if (ct) {
		e->has_ct = 1;
		BPF_CORE_READ_INTO(&e->orig_src, ct, tuplehash[0].tuple.src.u3.all);
		BPF_CORE_READ_INTO(&e->orig_dst, ct, tuplehash[0].tuple.dst.u3.all);
		BPF_CORE_READ_INTO(&e->reply_src, ct, tuplehash[1].tuple.src.u3.all);
		BPF_CORE_READ_INTO(&e->reply_dst, ct, tuplehash[1].tuple.dst.u3.all);
		e->orig_sport = BPF_CORE_READ(ct, tuplehash[0].tuple.src.u.all);
		e->orig_dport = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.u.all);
		e->reply_sport = BPF_CORE_READ(ct, tuplehash[1].tuple.src.u.all);
		e->reply_dport = BPF_CORE_READ(ct, tuplehash[1].tuple.dst.u.all);
	} else {
		__builtin_memcpy(e->orig_src, l4->saddr, 16);
		__builtin_memcpy(e->orig_dst, l4->daddr, 16);
		e->orig_sport = l4->sport;
		e->orig_dport = l4->dport;
	}
	bpf_ringbuf_submit(e, 0);
	return true;
}

SEC("fentry/__nf_conntrack_confirm")
int BPF_PROG(confirm_entry, struct sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *in = bpf_map_lookup_elem(&entry_ct, &zero);

	if (in)
		*in = (__u64)skb_ct(skb);
	return 0;
}

// resolved reports a UDP datagram that __nf_conntrack_confirm accepted after
// a clash: merged into the winner (its conntrack changed), or inserted in
// the reply direction only (IPS_NAT_CLASH).
static __always_inline void resolved(const struct tracer_config *cfg,
				     struct sk_buff *skb, struct nf_conn *ct)
{
	struct l4 l4 = {};
	__u32 zero = 0;
	__u64 *in = bpf_map_lookup_elem(&entry_ct, &zero);
	__u64 status;
	__u8 kind;

	if (!in || parse_l4(skb, &l4) || l4.proto != IPPROTO_UDP)
		return;
	status = BPF_CORE_READ(ct, status);
	if (*in != (__u64)ct)
		kind = KIND_CLASH_MERGED;
	else if (status & IPS_NAT_CLASH)
		kind = KIND_CLASH_INSERTED;
	else
		return;
	emit(cfg, skb, ct, &l4, kind, SOURCE_CONFIRM, 0, status);
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(confirm_exit, struct sk_buff *skb, int ret)
{
	struct nf_conn *ct;
	struct l4 l4 = {};
	__u64 status;
	__u32 zero = 0;
	__u64 *last;
	struct tracer_config *cfg;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 0;
	ct = skb_ct(skb);
	if (!ct)
		return 0;
	if (ret != NF_DROP) {
		resolved(cfg, skb, ct);
		return 0;
	}
	if (parse_l4(skb, &l4) || !opens_flow(&l4))
		return 0;
	status = BPF_CORE_READ(ct, status);
	// Claimed even when filtered out, so kfree_skb does not report it.
	emit(cfg, skb, ct, &l4, (status & IPS_SRC_NAT) ? KIND_SNAT_CLASH : KIND_OTHER_DROP,
	     SOURCE_CONFIRM, 0, status);
	last = bpf_map_lookup_elem(&claimed, &zero);
	if (last)
		*last = (__u64)skb;
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb, struct sk_buff *skb, void *location, __u32 reason)
{
	struct nf_conn *ct;
	struct l4 l4 = {};
	__u64 status = 0;
	__u32 zero = 0;
	__u64 *last;
	__u8 kind = KIND_OTHER_DROP;
	struct tracer_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg)
		return 0;
	if (cfg->reason_tw_paws && reason == cfg->reason_tw_paws) {
		// No conntrack here: the server's own stack dropped the SYN.
		if (!parse_l4(skb, &l4) && opens_flow(&l4))
			emit(cfg, skb, NULL, &l4, KIND_PAWS_TIMEWAIT, SOURCE_KFREE_SKB, reason, 0);
		return 0;
	}
	if (reason != cfg->reason_netfilter_drop)
		return 0;
	last = bpf_map_lookup_elem(&claimed, &zero);
	if (last && *last == (__u64)skb) {
		*last = 0;
		return 0;
	}
	if (parse_l4(skb, &l4) || !opens_flow(&l4))
		return 0;
	ct = skb_ct(skb);
	if (ct)
		status = BPF_CORE_READ(ct, status);
	// A candidate only: a firewall rule that drops the SYN after source NAT
	// leaves the same state. User space confirms it by looking up the REPLY
	// tuple, which the winner of the race holds.
	if (cfg->classify_in_tp && ct && (status & IPS_SRC_NAT) && never_inserted(ct))
		kind = KIND_SNAT_CLASH;
	emit(cfg, skb, ct, &l4, kind, SOURCE_KFREE_SKB, reason, status);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	struct dest_key key = {};
	__u64 one = 1, *n;

	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_SYN_SENT)
		return 0;
	key.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (key.family == AF_INET) {
		__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(key.addr, &d, 4);
	} else if (key.family == AF_INET6) {
		BPF_CORE_READ_INTO(&key.addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return 0;
	}
	key.port = BPF_CORE_READ(sk, __sk_common.skc_dport);
	stat_inc(STAT_SYN_RETRANS);
	n = bpf_map_lookup_elem(&syn_retransmits, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	// Another CPU may insert the key between the lookup and this update.
	if (bpf_map_update_elem(&syn_retransmits, &key, &one, BPF_NOEXIST) == 0)
		return 0;
	n = bpf_map_lookup_elem(&syn_retransmits, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
