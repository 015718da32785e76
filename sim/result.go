package sim

import (
	"strconv"

	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/natmodel"
)

// Result is what one scenario did.
type Result struct {
	Era      string `json:"era"`
	NAT      string `json:"nat"`
	Workload string `json:"workload"`
	Pods     int    `json:"pods"`
	CPUs     int    `json:"cpus"`
	Seed     uint64 `json:"seed"`
	Window   string `json:"window"`

	Connections int    `json:"connections"` // connect() calls
	SYNs        uint64 `json:"syns"`        // SYNs sent, retransmissions included
	// Clashes counts SYNs dropped at confirm because their tuple clashed
	// (the kernel's insert_failed and drop).
	Clashes uint64 `json:"clashes"`
	// NoTuple counts the Clashes whose NAT search found no free tuple
	// (port exhaustion, not the race): the last port tried was kept.
	NoTuple       uint64     `json:"no_tuple_drops"`
	ClashRate     float64    `json:"clash_rate"`      // Clashes / SYNs
	ClashRateCI95 [2]float64 `json:"clash_rate_ci95"` // 95% Wilson interval
	// SynLinearTimeouts is the TCP scenario's tcp_syn_linear_timeouts: its
	// first SynLinearTimeouts+1 SYN timeouts are the initial RTO each, the
	// rest double (4 by default from 6.5; absent means 0: all double).
	SynLinearTimeouts int `json:"syn_linear_timeouts,omitempty"`
	// Delayed counts connections by the SYN retransmissions they needed
	// ("0", "1", ...); a failed connection counts one above the most the
	// scenario allows (MaxRetransmissions: syn_retries plus
	// SynLinearTimeouts).
	Delayed map[string]int `json:"delayed"`
	Failed  int            `json:"failed"` // gave up after tcp_syn_retries
	// NoPort counts connect()s that found no free local port.
	NoPort int `json:"no_port,omitempty"`
	// PAWSTimewait counts SYNs the server's TIME_WAIT rejected by PAWS
	// (short workload: sim/paws.go), the lab's causes.paws_timewait.
	PAWSTimewait uint64 `json:"paws_timewait"`
	// Steps counts the NAT choices by get_unique_tuple branch.
	Steps     map[string]uint64 `json:"steps"`
	Conntrack natmodel.Stats    `json:"conntrack"`
	LatencyMS Latency           `json:"latency_ms"`
	// SimSeconds is the virtual time the scenario spanned.
	SimSeconds float64 `json:"sim_seconds"`
	// UDPStats is set for a UDP scenario (Config.Proto), its fields inline.
	*UDPStats
}

// summarize fills res's figures from a finished scenario: started
// connections (or queries), the retransmission histogram, the NAT steps,
// the latencies (ms), the table's counters and the virtual clock (ns).
func summarize(c *Config, res Result, started int, hist []int, steps [6]uint64, lat Latency, st natmodel.Stats, now int64) Result {
	res.Era = c.Era.String()
	res.NAT = c.NAT.String()
	res.Workload = c.Workload
	res.Pods, res.CPUs, res.Seed = c.Pods, c.CPUs, c.Seed
	res.Window = c.Window.String()
	if c.Proto != UDP {
		res.SynLinearTimeouts = c.linearTimeouts()
	}
	res.Connections = started
	if res.SYNs > 0 {
		res.ClashRate = float64(res.Clashes) / float64(res.SYNs)
	}
	lo, hi := stats.Wilson(res.Clashes, res.SYNs)
	res.ClashRateCI95 = [2]float64{lo, hi}
	res.Delayed = delayedMap(hist)
	res.Steps = map[string]uint64{}
	for s, n := range steps {
		if n > 0 {
			res.Steps[natmodel.Step(s).String()] = n
		}
	}
	res.Conntrack = st
	res.LatencyMS = lat
	res.SimSeconds = float64(now) / 1e9
	return res
}

// Latency summarizes connection setup delays in milliseconds, as the lab
// does.
type Latency = stats.Latency

func delayedMap(h []int) map[string]int {
	m := make(map[string]int, len(h))
	for i, n := range h {
		if n > 0 {
			m[strconv.Itoa(i)] = n
		}
	}
	return m
}
