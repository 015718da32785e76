package lab

import (
	"fmt"
	"math"
	"net/netip"
	"strings"

	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/lab/labnet"
)

// UDPReport describes a UDP run's client (Report.UDP).
type UDPReport struct {
	TimeoutSeconds float64 `json:"timeout_seconds"` // the client's wait before it retries
	Attempts       int     `json:"attempts"`        // transmissions of a query at most
	// Service is set when the queries went to the node's cluster-DNS
	// service address, DNATed to one of the servers at random.
	Service string `json:"service,omitempty"`
}

// protoReport is the report's protocol and UDP client description.
func protoReport(cfg Config) (string, *UDPReport) {
	if cfg.Proto != UDP {
		return "", nil
	}
	u := &UDPReport{TimeoutSeconds: cfg.UDP.Timeout.Seconds(), Attempts: cfg.UDP.Attempts}
	if cfg.UDP.Service {
		u.Service = netip.AddrPortFrom(labnet.ServiceAddr, cfg.Workload.Dport).String()
	}
	return UDP, u
}

// UDPResult is what a UDP run adds to a Result (inline in its JSON form).
// A query's transmissions are its first send and its retries; each that
// got no answer within the client's timeout is lost.
type UDPResult struct {
	Queries   int    `json:"queries"`   // queries asked
	Datagrams uint64 `json:"datagrams"` // transmissions: queries plus retries
	Lost      uint64 `json:"lost"`      // transmissions unanswered within the timeout
	Retried   int    `json:"retried"`   // queries sent again after the timeout
	// FailedQueries got no answer after every attempt (also in failed).
	FailedQueries int `json:"failed_queries"`
	// LossRate is lost over datagrams, with a 95% Wilson interval.
	LossRate     float64    `json:"loss_rate"`
	LossRateCI95 [2]float64 `json:"loss_rate_ci95"`
	// ConntrackPerCPU is the node's insert_failed, drop and clash_resolve
	// per CPU (from /proc): the race shows on the CPUs that lost it.
	ConntrackPerCPU []CPUConntrack `json:"conntrack_per_cpu"`
	// Socket counters of the pods' and servers' Udp MIB.
	PodRcvbufErrors    uint64 `json:"pod_rcvbuf_errors"`
	PodNoPorts         uint64 `json:"pod_no_ports"` // answers that found their socket closed
	ServerRcvbufErrors uint64 `json:"server_rcvbuf_errors"`
	// LossCauses accounts for every lost transmission, with Causes.
	LossCauses UDPCauses `json:"udp_causes"`

	lateSeen   uint64 // late answers the clients read
	stragglers uint64 // answers still due when their query was answered by an earlier attempt's
}

// CPUConntrack is one CPU's share of the node's UDP clash counters.
type CPUConntrack struct {
	CPU          int    `json:"cpu"`
	InsertFailed uint64 `json:"insert_failed"`
	Drop         uint64 `json:"drop"`
	ClashResolve uint64 `json:"clash_resolve"`
}

// UDPCauses are the causes of lost transmissions that only UDP has; the
// SNAT clashes, table-full drops and unexplained losses are in Causes.
type UDPCauses struct {
	// ChainTooLong: conntrack refused the entry for a too long hash chain
	// (5.15+: counted in insert_failed, not in drop).
	ChainTooLong uint64 `json:"chain_too_long"`
	// SocketBuffer: a pod's or a server's socket was full (RcvbufErrors).
	SocketBuffer uint64 `json:"socket_buffer"`
	// Late: the answer came, after the client's timeout (seen by the
	// client, or arriving at its closed socket: the pods' Udp NoPorts).
	Late uint64 `json:"late"`
}

// finishUDP computes a UDP result's derived figures and accounts for
// every lost transmission.
func (r *Result) finishUDP() {
	u := r.UDPResult
	r.LatencyMS = stats.Summarize(r.LatencyMillis())
	r.synsSent = u.Datagrams
	r.CountersAgree = r.Conntrack == r.ConntrackNetlink
	r.Causes, u.LossCauses, r.Accounted, r.Note = accountUDP(r)
	// The clash rate counts the drops of unresolved clashes: before 5.10
	// insert_failed also counts the resolved ones.
	r.ClashRate, u.LossRate = 0, 0
	if u.Datagrams > 0 {
		r.ClashRate = float64(r.Causes.SNATClash) / float64(u.Datagrams)
		u.LossRate = float64(u.Lost) / float64(u.Datagrams)
	}
	lo, hi := stats.Wilson(r.Causes.SNATClash, u.Datagrams)
	r.ClashRateCI95 = [2]float64{lo, hi}
	lo, hi = stats.Wilson(u.Lost, u.Datagrams)
	u.LossRateCI95 = [2]float64{lo, hi}
}

// accountUDP explains the lost transmissions by what the kernel counted.
// An unresolved clash at confirm counts both insert_failed and drop (a
// resolved one counts clash_resolve from 5.10, insert_failed before), so
// SNAT clashes are the drops that are also insert failures; a too long
// chain counts insert_failed alone; drops beyond the insert failures are
// a full table's.
func accountUDP(r *Result) (Causes, UDPCauses, bool, string) {
	u := r.UDPResult
	ct := r.Conntrack
	uc := u.LossCauses
	uc.ChainTooLong = ct.ChainTooLong
	uc.SocketBuffer = u.PodRcvbufErrors + u.ServerRcvbufErrors
	// An answer that found its socket closed came after its client had
	// stopped waiting for it: a late answer to a transmission counted lost,
	// unless it answers the last attempt of a query an earlier attempt's
	// late answer had answered (a straggler, never lost).
	uc.Late = u.lateSeen + u.PodNoPorts - min(u.PodNoPorts, u.stragglers)
	c := Causes{SNATClash: min(ct.Drop, ct.InsertFailed-min(ct.InsertFailed, ct.ChainTooLong))}
	c.TableFull = ct.Drop - c.SNATClash
	explained := c.SNATClash + c.TableFull + uc.ChainTooLong + uc.SocketBuffer + uc.Late
	var notes []string
	if u.Lost > explained {
		c.Unexplained = u.Lost - explained
		notes = append(notes, fmt.Sprintf("%d lost queries have no kernel drop to explain them", c.Unexplained))
	}
	if explained > u.Lost {
		notes = append(notes, fmt.Sprintf("the kernel counted %d drops but clients lost only %d queries (drops of answers, or of other packets?)", explained, u.Lost))
	}
	if !r.CountersAgree {
		notes = append(notes, "/proc and ctnetlink counters disagree")
	}
	return c, uc, len(notes) == 0, strings.Join(notes, "; ")
}

// udpVerdict compares every UDP result against the first in one sentence:
// queries lost through the race, and clashes the kernel resolved.
func udpVerdict(rs []*Result) string {
	b := rs[0]
	var s strings.Builder
	if b.Causes.SNATClash == 0 {
		fmt.Fprintf(&s, "no query lost to an SNAT clash under %s in %d (95%% upper bound %.3g%%)", b.NAT, b.Datagrams, 100*b.ClashRateCI95[1])
	} else {
		fmt.Fprintf(&s, "this kernel loses %.2g%% of UDP queries through the SNAT race under %s (%d of %d, each one a client timeout)", 100*b.ClashRate, b.NAT, b.Causes.SNATClash, b.Datagrams)
	}
	if b.Conntrack.ClashResolve > 0 {
		fmt.Fprintf(&s, ", and resolves %d clashes without loss", b.Conntrack.ClashResolve)
	}
	for _, r := range rs[1:] {
		name := r.NAT
		if r.Backend != b.Backend {
			name += " (" + r.Backend + ")"
		}
		fmt.Fprintf(&s, "; %s: %d lost to clashes in %d", name, r.Causes.SNATClash, r.Datagrams)
		switch {
		case r.Causes.SNATClash == 0 && b.ClashRate > 0 && r.ClashRateCI95[1] > 0:
			if ratio := b.ClashRateCI95[0] / r.ClashRateCI95[1]; ratio >= 2 {
				fmt.Fprintf(&s, " — ≥ %.0f× fewer", math.Floor(ratio))
			} else {
				s.WriteString(" — too few clashes to tell the modes apart; send more queries")
			}
		case r.Causes.SNATClash > 0 && b.ClashRate > 0:
			fmt.Fprintf(&s, " — %.1f× fewer", b.ClashRate/r.ClashRate)
		}
		if r.Conntrack.ClashResolve > 0 {
			fmt.Fprintf(&s, ", %d resolved", r.Conntrack.ClashResolve)
		}
	}
	return s.String()
}
