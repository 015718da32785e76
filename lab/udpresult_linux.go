//go:build linux

package lab

import "fmt"

// addUDP folds one UDP round's outcomes and counter deltas into r.
func (r *Result) addUDP(outs []udpOutcome, d udpDelta) {
	if r.UDPResult == nil {
		r.UDPResult = &UDPResult{}
	}
	u := r.UDPResult
	r.add(nil, d.roundDelta)
	for _, o := range outs {
		r.Connections++
		u.Queries++
		r.latencies = append(r.latencies, o.latency)
		u.Datagrams += uint64(o.attempt) + 1
		u.Lost += uint64(o.lost)
		u.lateSeen += uint64(o.late)
		if o.answered && o.seen&(1<<o.attempt) == 0 {
			// Answered by a late answer to an earlier attempt: the last
			// attempt, which never timed out, is answered after the socket
			// closed (Udp NoPorts) without having been lost.
			u.stragglers++
		}
		if o.attempt > 0 {
			u.Retried++
		}
		if !o.answered {
			r.Failed++
			u.FailedQueries++
		}
		r.RetransHistogram[fmt.Sprint(o.attempt)]++
		if o.attempt > 0 {
			r.Retransmitted++
		}
	}
	for _, c := range d.perCPU {
		for len(u.ConntrackPerCPU) <= c.CPU {
			u.ConntrackPerCPU = append(u.ConntrackPerCPU, CPUConntrack{CPU: len(u.ConntrackPerCPU)})
		}
		p := &u.ConntrackPerCPU[c.CPU]
		p.InsertFailed += c.InsertFailed
		p.Drop += c.Drop
		p.ClashResolve += c.ClashResolve
	}
	u.PodRcvbufErrors += d.podRcvbuf
	u.PodNoPorts += d.podNoPorts
	u.ServerRcvbufErrors += d.srvRcvbuf
}
