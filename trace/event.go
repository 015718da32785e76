package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Kind classifies a dropped SYN or UDP datagram, or a UDP clash the kernel
// resolved.
type Kind string

const (
	// KindSNATClash is a SYN or UDP datagram dropped because its
	// source-NATed conntrack failed to confirm: another flow confirmed the
	// same REPLY tuple first.
	KindSNATClash Kind = "snat_clash"
	// KindOtherDrop is any other netfilter drop of a TCP SYN or UDP
	// datagram: a firewall rule, a failed confirm of a conntrack that was not
	// source NATed.
	KindOtherDrop Kind = "other_drop"
	// KindClashMerged is a UDP datagram whose conntrack clashed at confirm
	// and that the kernel attached to the winning conntrack instead (the
	// entries were the same flow both ways, or the winner was not NATed):
	// nothing was lost. Seen by the fexit program only.
	KindClashMerged Kind = "clash_merged"
	// KindClashInserted is a UDP datagram whose conntrack clashed in the
	// original direction only and that the kernel inserted in its reply
	// direction (5.6+, IPS_NAT_CLASH): nothing was lost. Fexit only.
	KindClashInserted Kind = "clash_inserted"
	// KindPAWSTimewait is a TCP SYN that a TIME_WAIT socket in the traced
	// namespace rejected because its timestamp was older than the last one
	// it saw (drop reason TCP_RFC7323_TW_PAWS, 6.16+; Options.PAWS): the
	// server's side of a remapped short connection. Not a netfilter drop.
	KindPAWSTimewait Kind = "paws_timewait"
)

// Resolved reports whether k is a clash the kernel resolved without loss.
func (k Kind) Resolved() bool { return k == KindClashMerged || k == KindClashInserted }

// Hook names the program that saw a drop.
type Hook string

const (
	// HookConfirm is the fexit program on __nf_conntrack_confirm.
	HookConfirm Hook = "fexit:__nf_conntrack_confirm"
	// HookKfreeSkb is the skb:kfree_skb tracepoint.
	HookKfreeSkb Hook = "tp:skb:kfree_skb"
)

// Evidence says how a drop was attributed to the SNAT race.
type Evidence string

const (
	// EvidenceConfirmDrop: __nf_conntrack_confirm returned NF_DROP for the
	// SYN (fexit program).
	EvidenceConfirmDrop Evidence = "confirm_drop"
	// EvidenceReplyTaken: the source-NATed conntrack was never inserted and
	// another conntrack holds its REPLY tuple (tracepoint and ctnetlink).
	EvidenceReplyTaken Evidence = "reply_taken"
	// EvidenceUnverified: the source-NATed conntrack was never inserted, but
	// its namespace could not be reached to look for the winner.
	EvidenceUnverified Evidence = "unverified"
)

// Tuple is one direction of a connection, as a packet carries it.
type Tuple struct {
	Src netip.AddrPort `json:"src"`
	Dst netip.AddrPort `json:"dst"`
}

// String formats t as "src -> dst".
func (t Tuple) String() string { return t.Src.String() + " -> " + t.Dst.String() }

// Event is one TCP SYN or UDP datagram dropped by netfilter, or one UDP
// clash resolved at confirm.
type Event struct {
	// Time is when the drop happened, on the wall clock.
	Time time.Time `json:"time"`
	// CPU is the CPU that dropped the SYN.
	CPU int `json:"cpu"`
	// NetNS is the inode of the network namespace that dropped it (the
	// node), as in /proc/<pid>/ns/net.
	NetNS uint32 `json:"netns"`
	// Orig is the connection as the client sent it: pod ip:port -> dst:port.
	Orig Tuple `json:"orig"`
	// NAT is the connection as it would have left the node after source NAT:
	// nat ip:port -> dst:port, from the conntrack REPLY tuple. It equals Orig
	// when no NAT was applied and is zero when the SYN carried no conntrack.
	NAT Tuple `json:"nat"`
	// Kind is KindSNATClash or KindOtherDrop.
	Kind Kind `json:"kind"`
	// Reason is the kernel's drop reason without its SKB_DROP_REASON_
	// prefix, e.g. "NETFILTER_DROP".
	Reason string `json:"reason"`
	// Hook is the program that saw the drop.
	Hook Hook `json:"hook"`
	// Evidence says how an SNAT clash was established; "" for other drops.
	Evidence Evidence `json:"evidence,omitempty"`
	// CTStatus holds the conntrack status bits (IPS_*), 0 without conntrack.
	CTStatus uint64 `json:"ct_status"`
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
}

// Layout of struct event in bpf/trace.bpf.c (host byte order, ports in
// network order). The generated traceBPFEvent has the same layout; decoding
// by offset keeps this parser free of unsafe and usable on every OS.
const (
	offTs         = 0
	offStatus     = 8
	offNetNS      = 16
	offCPU        = 20
	offReason     = 24
	offKind       = 28
	offSource     = 29
	offFamily     = 30
	offHasCT      = 31
	offOrigSrc    = 32
	offOrigDst    = 48
	offReplySrc   = 64
	offReplyDst   = 80
	offOrigSport  = 96
	offOrigDport  = 98
	offReplySport = 100
	offReplyDport = 102
	offProto      = 104
	recordSize    = 112
)

// Values of struct event fields, as in bpf/trace.bpf.c.
const (
	rawKindSNATClash     = 1
	rawKindOtherDrop     = 2
	rawKindClashMerged   = 3
	rawKindClashInserted = 4
	rawKindPAWSTimewait  = 5
	ipprotoTCP           = 6
	ipprotoUDP           = 17
	rawSourceConfirm     = 1
	rawSourceKfree       = 2
	afInet               = 2
	afInet6              = 10
)

// kindOf names a struct event kind.
func kindOf(raw uint8) (Kind, error) {
	switch raw {
	case rawKindSNATClash:
		return KindSNATClash, nil
	case rawKindOtherDrop:
		return KindOtherDrop, nil
	case rawKindClashMerged:
		return KindClashMerged, nil
	case rawKindClashInserted:
		return KindClashInserted, nil
	case rawKindPAWSTimewait:
		return KindPAWSTimewait, nil
	}
	return "", fmt.Errorf("decoding event: unknown kind %d", raw)
}

// protoOf names a struct event protocol.
func protoOf(raw uint8) (string, error) {
	switch raw {
	case ipprotoTCP:
		return "tcp", nil
	case ipprotoUDP:
		return "udp", nil
	}
	return "", fmt.Errorf("decoding event: unknown protocol %d", raw)
}

// clock converts the kernel's CLOCK_MONOTONIC nanoseconds to wall time from
// one pair of readings taken together.
type clock struct {
	wall time.Time
	mono time.Duration
}

func (c clock) at(monoNS uint64) time.Time {
	return c.wall.Add(time.Duration(monoNS) - c.mono)
}

// errShortRecord is returned for a ring buffer record shorter than struct event.
var errShortRecord = errors.New("short record")

// decoder turns ring buffer records into events.
type decoder struct {
	clock   clock
	reasons map[uint32]string // drop reason value -> name
}

// decode parses one struct event record.
func (d decoder) decode(b []byte) (Event, error) {
	if len(b) < recordSize {
		return Event{}, fmt.Errorf("decoding event of %d bytes: %w (want %d)", len(b), errShortRecord, recordSize)
	}
	ne := binary.NativeEndian
	e := Event{
		Time:     d.clock.at(ne.Uint64(b[offTs:])),
		CTStatus: ne.Uint64(b[offStatus:]),
		NetNS:    ne.Uint32(b[offNetNS:]),
		CPU:      int(ne.Uint32(b[offCPU:])),
	}
	var err error
	if e.Kind, err = kindOf(b[offKind]); err != nil {
		return Event{}, err
	}
	switch b[offSource] {
	case rawSourceConfirm:
		e.Hook = HookConfirm
		if e.Kind == KindSNATClash {
			e.Evidence = EvidenceConfirmDrop
		}
		if !e.Kind.Resolved() {
			e.Reason = "NETFILTER_DROP" // what nf_hook_slow reports next
		}
	case rawSourceKfree:
		e.Hook = HookKfreeSkb
		reason := ne.Uint32(b[offReason:])
		if name, ok := d.reasons[reason]; ok {
			e.Reason = name
		} else {
			e.Reason = fmt.Sprintf("reason_%d", reason)
		}
	default:
		return Event{}, fmt.Errorf("decoding event: unknown source %d", b[offSource])
	}
	if e.Proto, err = protoOf(b[offProto]); err != nil {
		return Event{}, err
	}
	addr := func(off int) (netip.Addr, error) {
		switch b[offFamily] {
		case afInet:
			return netip.AddrFrom4([4]byte(b[off : off+4])), nil
		case afInet6:
			return netip.AddrFrom16([16]byte(b[off : off+16])), nil
		}
		return netip.Addr{}, fmt.Errorf("decoding event: unknown address family %d", b[offFamily])
	}
	port := func(off int) uint16 { return binary.BigEndian.Uint16(b[off:]) }
	ap := func(aoff, poff int) (netip.AddrPort, error) {
		a, err := addr(aoff)
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(a, port(poff)), nil
	}
	if e.Orig.Src, err = ap(offOrigSrc, offOrigSport); err != nil {
		return Event{}, err
	}
	if e.Orig.Dst, err = ap(offOrigDst, offOrigDport); err != nil {
		return Event{}, err
	}
	if b[offHasCT] != 0 {
		// The REPLY tuple runs dst -> nat; the NATed SYN is its inverse.
		if e.NAT.Dst, err = ap(offReplySrc, offReplySport); err != nil {
			return Event{}, err
		}
		if e.NAT.Src, err = ap(offReplyDst, offReplyDport); err != nil {
			return Event{}, err
		}
	}
	return e, nil
}
