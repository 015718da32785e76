package trace

import (
	"fmt"
	"time"
)

// Mode selects how SNAT clashes are recognised.
type Mode string

const (
	// ModeAuto uses the fexit program on __nf_conntrack_confirm when the
	// kernel allows it, and ModeTracepoint otherwise.
	ModeAuto Mode = "auto"
	// ModeFexit requires the fexit program: Start fails if it cannot attach.
	// A SYN is an SNAT clash when __nf_conntrack_confirm returned NF_DROP for
	// it and its conntrack is source NATed: exact.
	ModeFexit Mode = "fexit"
	// ModeTracepoint uses skb:kfree_skb alone: a netfilter drop of a TCP SYN
	// whose source-NATed conntrack was never inserted is a candidate, and it
	// is an SNAT clash when another conntrack holds its REPLY tuple (the
	// winner), looked up over ctnetlink in the drop's namespace. A firewall
	// rule that drops a SYN after source NAT leaves no winner: an other drop.
	ModeTracepoint Mode = "tracepoint"
)

// ParseMode parses "auto", "fexit" or "tracepoint".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeFexit, ModeTracepoint:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want auto, fexit or tracepoint)", s)
}

// Options configure a Tracer. The zero value is ready to use.
type Options struct {
	// Mode selects the attach points; "" means ModeAuto.
	Mode Mode
	// NetNS keeps only drops in the network namespace with this inode (the
	// programs filter, so other namespaces cost no events); 0 keeps all.
	// SYN retransmissions are counted in every namespace.
	NetNS uint32
	// PAWS also reports the SYNs that TIME_WAIT sockets reject by PAWS
	// (KindPAWSTimewait), where the kernel has the drop reason
	// (TCP_RFC7323_TW_PAWS, 6.16+; Tracer.PAWS says whether it does).
	PAWS bool
	// Buffer is the capacity of the Events channel; 0 means 1024.
	Buffer int
	// Now is the wall clock used to date events; nil means time.Now.
	Now func() time.Time
}

// Stats are the tracer's counters since Start.
type Stats struct {
	SNATClashes uint64 `json:"snat_clashes"` // SNAT clash drops reported (Options.NetNS)
	OtherDrops  uint64 `json:"other_drops"`  // other netfilter SYN and UDP drops reported (Options.NetNS)
	// ResolvedClashes counts the UDP clashes the kernel resolved at confirm
	// (merged or inserted; fexit mode only): nothing was lost.
	ResolvedClashes uint64 `json:"resolved_clashes"`
	SYNRetransmits  uint64 `json:"syn_retransmits"` // SYN retransmissions seen
	// PAWSTimewait counts the SYNs TIME_WAIT sockets rejected by PAWS
	// (Options.PAWS).
	PAWSTimewait uint64 `json:"paws_timewait,omitempty"`
	Lost         uint64 `json:"lost"` // events lost: the ring buffer was full
	// Missed counts the runs the kernel skipped because the same program was
	// already running on that CPU (bpf_prog_info recursion_misses, summed over
	// the programs): the drops and SYN retransmissions of those runs are in
	// no other counter.
	Missed uint64 `json:"missed,omitempty"`
}
