package lab

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/tsoffset"
)

// Report is the outcome of one lab run: one Result per NAT mode and backend.
// Its JSON form is the `snatrace lab --json` document.
type Report struct {
	Kernel   string         `json:"kernel"`
	CPUs     int            `json:"cpus"`
	Prefix   string         `json:"prefix"`
	Workload WorkloadReport `json:"workload"`
	Results  []*Result      `json:"results"`
	Verdict  string         `json:"verdict"`
	Seconds  float64        `json:"seconds"` // wall time, setup and teardown included
	// TrafficSeconds is the time spent sending and settling rounds, and
	// ConnectRate the connections per second over it (all modes).
	TrafficSeconds float64 `json:"traffic_seconds"`
	ConnectRate    float64 `json:"connect_rate"`
	Stopped        string  `json:"stopped"` // why the run ended: "connections", "until", "duration", "interrupted", "error"
	// Incomplete is the round an interruption cut short, left out of every
	// result: its handshakes were abandoned before they could be counted.
	// Nil when the interruption came between rounds (or before a round's
	// first connect()).
	Incomplete *IncompleteRound `json:"incomplete_round,omitempty"`
	// VM describes the virtual machine the lab ran in (snatrace lab
	// --kernel); nil when it ran on the host's own kernel.
	VM *VM `json:"vm,omitempty"`
	// Proto is "udp" for a UDP run (absent for TCP), and UDP its client.
	Proto string     `json:"proto,omitempty"`
	UDP   *UDPReport `json:"udp,omitempty"`
	// TSOffsets is how the kernel offsets TCP timestamps, probed before a
	// short run (tsoffset.Probe): per-port offsets are what turn a NAT
	// mode's port remapping into PAWS rejections at the server.
	TSOffsets *tsoffset.Detection `json:"ts_offsets,omitempty"`
}

// VM is the virtual machine of a lab run on another kernel.
type VM struct {
	Accelerator string `json:"accelerator"` // "kvm", or "tcg" (QEMU's multi-threaded emulation)
	VCPUs       int    `json:"vcpus"`
	MemoryMiB   int    `json:"memory_mib"`
	QEMU        string `json:"qemu"`              // QEMU's version
	Package     string `json:"package,omitempty"` // the kernel package booted
	Image       string `json:"image"`             // the kernel image booted
	// BootSeconds is the host's time from starting QEMU to the guest's lab
	// starting; GuestBootSeconds the guest kernel's uptime then.
	BootSeconds      float64 `json:"boot_seconds"`
	GuestBootSeconds float64 `json:"guest_boot_seconds"`
	// WallSeconds is the host's time from starting QEMU to its exit.
	WallSeconds float64 `json:"wall_seconds"`
	// Initramfs is the guest image: its size, modules and build time.
	InitramfsBytes   int64    `json:"initramfs_bytes"`
	InitramfsModules int      `json:"initramfs_modules"`
	InitramfsSeconds float64  `json:"initramfs_seconds"`
	Tools            []string `json:"tools,omitempty"` // host tools copied in
	// ModulesLoaded are the modules loaded when the lab ended; the guest
	// loads none itself, so the kernel asked for each (request_module) as
	// the lab used its feature.
	ModulesLoaded []string `json:"modules_loaded,omitempty"`
}

// IncompleteRound is the round in flight when a run was interrupted.
type IncompleteRound struct {
	NAT         string `json:"nat"`
	Backend     string `json:"backend"`
	Connections int    `json:"connections"` // sent, not accounted
}

// WorkloadReport describes the traffic that was sent.
type WorkloadReport struct {
	Name        string    `json:"name"`
	Pods        int       `json:"pods"`
	Servers     int       `json:"servers"`
	Bursts      int       `json:"bursts,omitempty"` // same-port and ephemeral: bursts sent, all modes
	Connections int       `json:"connections"`      // all modes
	PortRange   [2]uint16 `json:"port_range,omitzero"`
	Rate        float64   `json:"rate,omitempty"` // steady: connections/s asked for
	Poisson     bool      `json:"poisson,omitempty"`
	// TimeoutSeconds is how long a TCP connection may take before the
	// client gives up and counts it failed (--timeout): the SYNs it sends
	// are those retransmitted before then.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
}

// Conntrack is a delta of the node's conntrack counters over a mode's rounds.
type Conntrack struct {
	InsertFailed  uint64 `json:"insert_failed"`
	Drop          uint64 `json:"drop"`
	ClashResolve  uint64 `json:"clash_resolve"`
	ChainTooLong  uint64 `json:"chaintoolong"`
	EarlyDrop     uint64 `json:"early_drop"`
	Invalid       uint64 `json:"invalid"`
	SearchRestart uint64 `json:"search_restart"`
}

func conntrackOf(c ctstat.Counters) Conntrack {
	return Conntrack{
		InsertFailed: c.InsertFailed, Drop: c.Drop, ClashResolve: c.ClashResolve,
		ChainTooLong: c.ChainTooLong, EarlyDrop: c.EarlyDrop, Invalid: c.Invalid,
		SearchRestart: c.SearchRestart,
	}
}

// Latency summarizes connect() latencies in milliseconds.
type Latency = stats.Latency

// Causes accounts for every SYN a mode's clients had to retransmit.
type Causes struct {
	SNATClash      uint64 `json:"snat_clash"`      // node conntrack insert_failed
	ListenOverflow uint64 `json:"listen_overflow"` // server TcpExt ListenDrops
	TableFull      uint64 `json:"table_full"`      // node conntrack drops that were not insert failures
	Unexplained    uint64 `json:"unexplained"`     // retransmitted SYNs none of the above explains
	// PAWSTimewait: SYNs a server's TIME_WAIT socket rejected by PAWS
	// (the servers' TcpExt PAWSTimewait, PAWSEstab before 6.16).
	PAWSTimewait uint64 `json:"paws_timewait"`
}

// Result is what one NAT mode, through one backend, did to the workload.
type Result struct {
	NAT     string `json:"nat"`
	Backend string `json:"backend"`
	Rounds  int    `json:"rounds"`

	Connections   int `json:"connections"`   // connect() calls
	Failed        int `json:"failed"`        // never connected (timed out or refused)
	Retransmitted int `json:"retransmitted"` // connections that needed >= 1 SYN retransmission
	// RetransHistogram counts connections by SYN retransmissions needed ("0", "1", ...).
	RetransHistogram map[string]int `json:"retrans_histogram"`
	// Delayed counts connections by latency class: "1s" is 0.9-2.9 s (one
	// retransmission), "3s" 2.9-6.9 s, "7s+" longer.
	Delayed map[string]int `json:"delayed"`
	// SynRetrans is the SYN retransmissions of the clients' sockets (TCP_INFO);
	// SynRetransKernel the pods' TcpExt TCPSynRetrans delta. They agree unless
	// something outside the lab sent from the pods.
	SynRetrans       uint64 `json:"syn_retrans"`
	SynRetransKernel uint64 `json:"syn_retrans_kernel"`

	Conntrack        Conntrack `json:"conntrack"`         // from /proc, by column name
	ConntrackNetlink Conntrack `json:"conntrack_netlink"` // from ctnetlink, by attribute
	CountersAgree    bool      `json:"counters_agree"`    // the two sources gave the same deltas

	ListenOverflows uint64 `json:"listen_overflows"`
	ListenDrops     uint64 `json:"listen_drops"`
	// ServerPAWS is what the servers counted of SYNs meeting their
	// TIME_WAIT sockets (TCP only).
	ServerPAWS PAWSCounters `json:"server_paws,omitzero"`

	LatencyMS Latency `json:"latency_ms"`
	// ClashRate is insert_failed over SYNs sent (connections + retransmissions),
	// with a 95% Wilson interval.
	ClashRate     float64    `json:"clash_rate"`
	ClashRateCI95 [2]float64 `json:"clash_rate_ci95"`
	Causes        Causes     `json:"causes"`
	Accounted     bool       `json:"accounted"` // every retransmitted SYN has a cause and no cause is left over
	Note          string     `json:"note,omitempty"`
	// Trace is set by --trace: the eBPF tracer's view of the same drops.
	Trace *TraceResult `json:"trace,omitempty"`
	// UDPResult is set for a UDP run (Config.Proto), its fields inline.
	*UDPResult

	latencies []time.Duration // for plots
	synsSent  uint64
}

// Latencies returns every connect() latency of the result, in the order sent.
func (r *Result) Latencies() []time.Duration { return r.latencies }

// LatencyMillis returns every connect() latency in milliseconds, in the
// order sent (a new slice).
func (r *Result) LatencyMillis() []float64 {
	ms := make([]float64, len(r.latencies))
	for i, l := range r.latencies {
		ms[i] = float64(l) / float64(time.Millisecond)
	}
	return ms
}

// add folds one round's attempts and counter deltas into r.
func (r *Result) add(atts []attempt, d roundDelta) {
	r.Rounds++
	if r.RetransHistogram == nil {
		r.RetransHistogram = map[string]int{}
		r.Delayed = map[string]int{}
	}
	for _, a := range atts {
		r.Connections++
		r.latencies = append(r.latencies, a.latency)
		if a.err != nil {
			r.Failed++
		}
		r.RetransHistogram[strconv.Itoa(a.retrans)]++
		if a.retrans > 0 {
			r.Retransmitted++
		}
		r.SynRetrans += uint64(a.retrans)
		if c := latencyClass(a.latency); c != "" {
			r.Delayed[c]++
		}
	}
	r.SynRetransKernel += d.synRetrans
	r.ListenOverflows += d.listenOverflows
	r.ListenDrops += d.listenDrops
	r.ServerPAWS.add(d.paws)
	add := func(c *Conntrack, x ctstat.Counters) {
		c.InsertFailed += x.InsertFailed
		c.Drop += x.Drop
		c.ClashResolve += x.ClashResolve
		c.ChainTooLong += x.ChainTooLong
		c.EarlyDrop += x.EarlyDrop
		c.Invalid += x.Invalid
		c.SearchRestart += x.SearchRestart
	}
	add(&r.Conntrack, d.proc)
	add(&r.ConntrackNetlink, d.netlink)
}

// latencyClass names the retransmission class of a connect latency, or "".
func latencyClass(l time.Duration) string {
	switch {
	case l < 900*time.Millisecond:
		return ""
	case l < 2900*time.Millisecond:
		return "1s"
	case l < 6900*time.Millisecond:
		return "3s"
	}
	return "7s+"
}

// finish computes the derived figures once all rounds are in.
func (r *Result) finish() {
	if r.UDPResult != nil {
		r.finishUDP()
		return
	}
	r.LatencyMS = stats.Summarize(r.LatencyMillis())
	r.synsSent = uint64(r.Connections) + r.SynRetrans
	r.ClashRate = 0
	if r.synsSent > 0 {
		r.ClashRate = float64(r.Conntrack.InsertFailed) / float64(r.synsSent)
	}
	lo, hi := stats.Wilson(r.Conntrack.InsertFailed, r.synsSent)
	r.ClashRateCI95 = [2]float64{lo, hi}
	r.CountersAgree = r.Conntrack == r.ConntrackNetlink
	r.Causes, r.Accounted, r.Note = account(r)
}

// account explains the retransmitted SYNs by the drops the kernel counted.
func account(r *Result) (Causes, bool, string) {
	c := Causes{SNATClash: r.Conntrack.InsertFailed, ListenOverflow: r.ListenDrops}
	if r.Conntrack.Drop > r.Conntrack.InsertFailed {
		c.TableFull = r.Conntrack.Drop - r.Conntrack.InsertFailed
	}
	others := c.SNATClash + c.ListenOverflow + c.TableFull
	c.PAWSTimewait, r.ServerPAWS.OtherSegments = r.ServerPAWS.splitPAWS(r.SynRetrans + uint64(r.Failed) - min(others, r.SynRetrans+uint64(r.Failed)))
	explained := others + c.PAWSTimewait
	var notes []string
	if r.SynRetrans > explained {
		c.Unexplained = r.SynRetrans - explained
		notes = append(notes, fmt.Sprintf("%d retransmitted SYNs have no kernel drop to explain them", c.Unexplained))
	}
	// A connection that failed sent its last SYN into the drop too, with no
	// retransmission after it: up to one drop per failed connection is
	// explained by that (a NAT range exhausted on a kernel without the 6.5
	// eviction drops every SYN of thousands of connections).
	if explained > r.SynRetrans+uint64(r.Failed) {
		notes = append(notes, fmt.Sprintf("the kernel counted %d drops but clients retransmitted only %d SYNs and %d connections failed (drops of non-SYN packets?)", explained, r.SynRetrans, r.Failed))
	}
	if r.SynRetransKernel != r.SynRetrans {
		notes = append(notes, fmt.Sprintf("pods' TcpExt TCPSynRetrans (%d) differs from the sockets' count (%d)", r.SynRetransKernel, r.SynRetrans))
	}
	if !r.CountersAgree {
		notes = append(notes, "/proc and ctnetlink counters disagree")
	}
	return c, len(notes) == 0, strings.Join(notes, "; ")
}

// verdict compares every result against the first (the baseline, normally
// plain masquerade) in one sentence: SNAT clashes, and the PAWS rejections
// at the servers' TIME_WAIT when there are any or the workload is short.
func verdict(rs []*Result, short bool) string {
	return clashVerdict(rs) + pawsVerdict(rs, short)
}

func clashVerdict(rs []*Result) string {
	if len(rs) == 0 {
		return "no results"
	}
	if rs[0].UDPResult != nil {
		return udpVerdict(rs)
	}
	b := rs[0]
	var s strings.Builder
	if b.Conntrack.InsertFailed == 0 {
		fmt.Fprintf(&s, "no SNAT clash under %s in %d SYNs (95%% upper bound %.3g%%)", b.NAT, b.synsSent, 100*b.ClashRateCI95[1])
	} else {
		fmt.Fprintf(&s, "this kernel drops %.2g%% of SYNs through the SNAT race under %s (%d of %d)", 100*b.ClashRate, b.NAT, b.Conntrack.InsertFailed, b.synsSent)
	}
	for _, r := range rs[1:] {
		name := r.NAT
		if r.Backend != b.Backend {
			name += " (" + r.Backend + ")"
		}
		if r.Conntrack.InsertFailed == 0 {
			fmt.Fprintf(&s, "; %s: 0 in %d", name, r.synsSent)
			if b.ClashRate > 0 && r.ClashRateCI95[1] > 0 {
				if ratio := b.ClashRateCI95[0] / r.ClashRateCI95[1]; ratio >= 2 {
					fmt.Fprintf(&s, " — ≥ %.0f× fewer", math.Floor(ratio))
				} else {
					s.WriteString(" — too few clashes to tell the modes apart; run more connections")
				}
			}
		} else {
			fmt.Fprintf(&s, "; %s: %.2g%% (%d of %d)", name, 100*r.ClashRate, r.Conntrack.InsertFailed, r.synsSent)
			if b.ClashRate > 0 {
				fmt.Fprintf(&s, " — %.1f× fewer", b.ClashRate/r.ClashRate)
			}
		}
	}
	return s.String()
}

// TraceResult is what `snatrace lab --trace` adds to a Result: the eBPF
// tracer's SNAT-clash drops in the node, paired with the lab's delayed
// connections by original tuple and time.
type TraceResult struct {
	Attributed int `json:"attributed"`  // SNAT-clash drops that match a delayed connection
	Unmatched  int `json:"unmatched"`   // delayed connections with no attributed drop
	Extra      int `json:"extra"`       // SNAT-clash drops that match no delayed connection
	OtherDrops int `json:"other_drops"` // netfilter SYN drops in the node that were not SNAT clashes
	// Resolved counts the UDP clashes the tracer saw resolved (merged or
	// inserted, nothing lost): as many as clash_resolve in fexit mode; the
	// tracepoint mode cannot see them (no packet is dropped).
	Resolved int `json:"resolved,omitempty"`
	// Mode is the tracer's mode: "fexit" or "tracepoint".
	Mode string `json:"mode,omitempty"`
	// PAWS is a short run's SYNs rejected at the servers' TIME_WAIT as
	// the tracer saw them (6.16+: the drop reason TCP_RFC7323_TW_PAWS).
	PAWS *PAWSTrace `json:"paws,omitempty"`
}

func (t *TraceResult) add(o TraceResult) {
	t.Attributed += o.Attributed
	t.Unmatched += o.Unmatched
	t.Extra += o.Extra
	t.OtherDrops += o.OtherDrops
	t.Resolved += o.Resolved
	t.Mode = o.Mode
	if o.PAWS != nil {
		if t.PAWS == nil {
			t.PAWS = &PAWSTrace{}
		}
		t.PAWS.add(*o.PAWS)
	}
}

// attempt is the outcome of one connect().
type attempt struct {
	pod, server int
	localPort   uint16        // the pod-side source port, after connect
	start       time.Time     // just before connect()
	latency     time.Duration // until the handshake completed, or failed
	retrans     int           // SYN retransmissions (TCP_INFO total_retrans)
	err         error         // nil when connected
}

// roundDelta is the difference of two counters readings.
type roundDelta struct {
	proc, netlink   ctstat.Counters
	synRetrans      uint64
	listenOverflows uint64
	listenDrops     uint64
	paws            PAWSCounters // servers'
}

// NewReport returns the report of a run of cfg on kernel release with cpus
// CPUs before its first round: the workload and a result per NAT mode and
// backend, in the order Run runs them, with nothing counted yet, and
// Stopped "connections". Run fills it in as it goes; a lab in a VM that
// was interrupted before its guest reported prints it as it is, stopped
// "interrupted".
func NewReport(cfg Config, release string, cpus int) *Report {
	rep := &Report{
		Kernel: release, CPUs: cpus, Prefix: cfg.Prefix, Stopped: "connections",
		Workload: WorkloadReport{
			Name: cfg.Workload.Name, Pods: cfg.Pods, Servers: cfg.Servers, PortRange: cfg.PortRange,
			Rate: cfg.Workload.Rate, Poisson: cfg.Workload.Poisson,
		},
	}
	rep.Proto, rep.UDP = protoReport(cfg)
	if rep.UDP == nil {
		rep.Workload.TimeoutSeconds = cfg.Timeout.Seconds()
	}
	for _, m := range cfg.Modes {
		for _, b := range cfg.Backends {
			rep.Results = append(rep.Results, &Result{NAT: m.String(), Backend: b.Flag()})
		}
	}
	return rep
}

// Finish derives what a report says from its counts: each result's rates,
// latency summary and accounting, and the verdict. Run finishes its
// report; a caller that builds one with NewReport finishes it too.
func (rep *Report) Finish() {
	for _, res := range rep.Results {
		res.finish()
	}
	rep.Verdict = verdict(rep.Results, rep.Workload.Name == Short)
}
