package lab

import (
	"fmt"
	"strings"
)

// PAWSCounters are the servers' counters of SYNs that met a TIME_WAIT
// socket of theirs, summed over a result's rounds (Result.ServerPAWS).
type PAWSCounters struct {
	// Counter names the TcpExt counter read: "PAWSTimewait" (6.16 and
	// later) or "PAWSEstab", which counted the TIME_WAIT rejections before
	// (tcp_timewait_state_process in 6.1 and 6.12, read in their sources).
	Counter string `json:"counter"`
	// TimewaitRejected is the segments a TIME_WAIT socket rejected because
	// their timestamp was older than the last one it saw (PAWS).
	TimewaitRejected uint64 `json:"timewait_rejected"`
	// ACKSkippedTimewait counts the answers to such segments the server
	// did not send (TCPACKSkippedTimeWait: one per 500 ms per socket).
	ACKSkippedTimewait uint64 `json:"ack_skipped_timewait"`
	// TimewaitOverflow counts connections that closed without a TIME_WAIT
	// socket (TCPTimeWaitOverflow: tcp_max_tw_buckets reached).
	TimewaitOverflow uint64 `json:"timewait_overflow"`
	// ClientResets is the pods' Tcp OutRsts: a client resets the ACK a
	// server's TIME_WAIT answers a rejected SYN with, and a short client
	// sends no other reset. Before 6.16 it tells the SYNs rejected at
	// TIME_WAIT (at most ClientResets + ACKSkippedTimewait) from the
	// established connections' PAWS drops that PAWSEstab counts too.
	ClientResets uint64 `json:"client_resets"`
	// OtherSegments are TIME_WAIT rejections that match no retransmitted
	// SYN: segments of a closed connection that arrived late (reordered
	// on their way), which a TIME_WAIT socket rejects by PAWS too and the
	// client answers with a reset from its closed port.
	OtherSegments uint64 `json:"other_segments,omitempty"`
}

// splitPAWS divides the servers' TIME_WAIT rejections into the SYNs the
// clients retransmitted (room: retransmitted SYNs and failed connections
// that no other cause explains) and other segments.
func (p PAWSCounters) splitPAWS(room uint64) (syns, other uint64) {
	n := p.timewaitSYNs()
	return min(n, room), n - min(n, room)
}

// timewaitSYNs is how many SYNs the servers' TIME_WAIT rejected: the
// PAWSTimewait counter where the kernel has it; before 6.16 PAWSEstab,
// bounded by the resets the clients answered those rejections with.
func (p PAWSCounters) timewaitSYNs() uint64 {
	if p.Counter != "PAWSEstab" {
		return p.TimewaitRejected
	}
	return min(p.TimewaitRejected, p.ClientResets+p.ACKSkippedTimewait)
}

func (p *PAWSCounters) add(d PAWSCounters) {
	if d.Counter != "" {
		p.Counter = d.Counter
	}
	p.TimewaitRejected += d.TimewaitRejected
	p.ACKSkippedTimewait += d.ACKSkippedTimewait
	p.TimewaitOverflow += d.TimewaitOverflow
	p.ClientResets += d.ClientResets
}

// pawsVerdict is the verdict's sentence on PAWS rejections at the servers'
// TIME_WAIT ("" when no result has any and the workload cannot show them):
// the cost a NAT mode that remaps ports pays on a kernel with per-port
// timestamp offsets, beside the SNAT clashes it removes.
func pawsVerdict(rs []*Result, short bool) string {
	any := false
	for _, r := range rs {
		any = any || r.Causes.PAWSTimewait > 0
	}
	if len(rs) == 0 || !any && !short {
		return ""
	}
	var parts []string
	for _, r := range rs {
		name := r.NAT
		if r.Backend != rs[0].Backend {
			name += " (" + r.Backend + ")"
		}
		late := r.Delayed["1s"] + r.Delayed["3s"] + r.Delayed["7s+"]
		parts = append(parts, fmt.Sprintf("%s %d (%d connections ≥ 0.9 s late)", name, r.Causes.PAWSTimewait, late))
	}
	s := "; SYNs rejected by PAWS at the server's TIME_WAIT (each cost a retransmission: ms when the client's reset clears the TIME_WAIT, 2 s when its retry is rejected again): " + strings.Join(parts, ", ")
	if any {
		s += " — a mode that maps other source ports onto a tuple the server still holds pays this on a kernel with per-port timestamp offsets"
	}
	return s
}

// PAWSTrace pairs the SYNs the tracer saw rejected at the servers'
// TIME_WAIT with the connections that retransmitted them.
type PAWSTrace struct {
	// Seen is the rejections the tracer reported; 0 with Note set when the
	// kernel does not show them (no TCP_RFC7323_TW_PAWS before 6.16).
	Seen int `json:"seen"`
	// Attributed rejections matched a delayed connection of the same
	// mode (its server port) whose handshake was under way, at most as
	// many per connection as it can have had rejected (its retransmitted
	// SYNs, and its last SYN when the handshake failed), as many as can be
	// (a maximum matching); Connections is how many delayed connections
	// got one or more.
	Attributed  int `json:"attributed"`
	Connections int `json:"connections"`
	Extra       int `json:"extra"` // rejections no delayed connection explains
	// Unseen is how many rejections the servers counted (PAWSTimewait)
	// beyond those the tracer reported. The kernel (6.18) now and then
	// counts one without calling kfree_skb with the drop reason: 7 of 36
	// runs of 600 short connections had one (about one rejection in
	// 1,350), with no event lost and no run missed.
	Unseen int    `json:"unseen,omitempty"`
	Note   string `json:"note,omitempty"`
}

func (p *PAWSTrace) add(o PAWSTrace) {
	p.Seen += o.Seen
	p.Attributed += o.Attributed
	p.Connections += o.Connections
	p.Extra += o.Extra
	p.Unseen += o.Unseen
	if o.Note != "" {
		p.Note = o.Note
	}
}
