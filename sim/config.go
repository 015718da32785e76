// Package sim is a discrete-event simulation of a NAT node on top of
// natmodel: CPUs that each run one packet's NAT-to-confirm window at a time,
// pods that choose their own source ports, bursts or steady arrivals, SYN
// retransmission timers and TIME_WAIT occupancy. It answers what the lab
// cannot: another kernel era, a bigger node, another load. Everything is
// virtual time and a seeded generator: one Config and seed give one Result.
//
// The traffic shapes follow the lab (package lab) so that the two can be
// compared: in a burst every pod connects once, pods spread round-robin over
// per-CPU client threads that start together and connect one after another;
// same-port bursts bind one fixed source port per burst; steady traffic
// arrives evenly (or Poisson) at a rate, connection i on CPU i mod C.
package sim

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/tsoffset"
)

// Chooser is how a pod's kernel picks an ephemeral source port.
type Chooser string

// Ephemeral port choosers.
const (
	// Hashed is Linux's __inet_hash_connect: a keyed hash of (saddr, daddr,
	// dport) and of the time in 10 s periods (so the offset jumps every
	// 10 s), plus a per-destination perturbation that grows by 2..16 per
	// connection, even ports first (RFC 6056 algorithm 4 style).
	Hashed Chooser = "hashed"
	// UniformPorts picks uniformly in ip_local_port_range.
	UniformPorts Chooser = "uniform"
	// Sequential counts up from a random start, per pod.
	Sequential Chooser = "sequential"
)

// Config is one simulated scenario. Zero fields take the defaults below.
type Config struct {
	Era      natmodel.Era
	NAT      natrule.Mode
	Workload string
	Pods     int
	CPUs     int
	Servers  int
	// Connections is the number of connect() calls; bursts round it up to
	// whole bursts. For steady traffic, 0 means Rate × Duration.
	Connections int
	// Rate is the connection rate, all pods together: steady arrivals, or
	// for bursts one burst every Pods/Rate seconds (0: back to back).
	Rate     float64
	Poisson  bool // steady: Poisson arrivals instead of evenly spaced
	Duration time.Duration

	PortRange [2]uint16 // pods' ip_local_port_range
	Chooser   Chooser
	BasePort  uint16 // same-port: burst k binds BasePort + k mod PortSpan
	PortSpan  int
	Dport     uint16

	// Window is the time between a packet's NAT choice and its confirm: the
	// race window during which the chosen tuple is invisible to other CPUs.
	Window Dist
	// PreNAT is the time from a SYN's conntrack entry creation (PREROUTING,
	// where a closed entry of the same tuple is killed) to its NAT choice
	// (POSTROUTING). Zero by default.
	PreNAT Dist
	// Gap is the time one CPU's client thread takes per connect() in a burst.
	Gap Dist
	// Skew is each CPU's start offset when a burst is released.
	Skew Dist
	// Lifetime is how long an accepted connection stays open.
	Lifetime Dist

	CTTimeWait     time.Duration // conntrack TIME_WAIT timeout
	ClientTimeWait time.Duration // pod socket TIME_WAIT (the client closes first)
	SynRetries     int           // net.ipv4.tcp_syn_retries
	RTO            time.Duration // initial SYN retransmission timeout
	// ConnectTimeout, if > 0, is when a client gives up on a connect()
	// after its first SYN, if the kernel has not yet: the kernel gives up
	// when the last SYN's timeout expires (127 s with 6 retries of 1 s).
	ConnectTimeout time.Duration
	// SynLinearTimeouts, if set, replaces the era's default of
	// net.ipv4.tcp_syn_linear_timeouts (4; eras 6.5 and later only, TCP
	// only), 0..MaxSynLinearTimeouts.
	SynLinearTimeouts *int

	Seed uint64
	// RoundSize, if > 0, splits the traffic into rounds of about this many
	// connections, as the lab does: after a round the traffic waits until
	// every connection of it has connected or failed (retransmissions
	// included), so a clashed connection holds its pod's port only until
	// the end of its round.
	RoundSize int
	// MaxProbes, if > 0, replaces MaxProbes as the scenario's work bound.
	MaxProbes uint64

	// Proto is "tcp" (connections, the default) or UDP: resolver-like
	// queries in the lab's UDP rounds (workloads same-port, ephemeral and
	// pairs), each lost query sent again after UDPTimeout, up to
	// UDPAttempts times; Connections counts queries, RoundSize the queries
	// between two conntrack flushes.
	Proto       string
	UDPTimeout  time.Duration
	UDPAttempts int
	// UDPService sends the queries to the lab's cluster-DNS service address
	// (labnet.ServiceAddr), DNATed at conntrack creation to one of the
	// servers chosen at random per new flow, then SNATed towards it.
	UDPService bool

	// ServerTimeWait is how long a server holds a tuple it closed first
	// (the short workload, sim/paws.go); TSOffsets how the pods' kernel
	// offsets TCP timestamps (tsoffset.PerPort, the default, or PerAddress).
	ServerTimeWait time.Duration
	TSOffsets      tsoffset.Kind
}

// Defaults.
const (
	DefaultPods        = 8
	DefaultCPUs        = 2
	DefaultConnections = 20000
	// MaxSYNs bounds a scenario so that a run finishes in reasonable time
	// (about 10 s at the model's speed).
	MaxSYNs = 50_000_000
	// MaxPods bounds the per-pod state.
	MaxPods = 1 << 20
	// MaxPortBitsets bounds the pods' port state: 8 KiB for each pod and
	// server a connection uses, 4 GiB at most.
	MaxPortBitsets = 4 << 30 / (1 << 16 / 8)
	// MaxCPUs bounds the CPU count.
	MaxCPUs = 4096
)

// DefaultWindow is the race window between nf_nat_setup_info and
// __nf_conntrack_confirm: the rest of POSTROUTING, a few hundred ns. The
// value was fitted to same-port lab runs on a 2-CPU 6.18 VM (VALIDATION.md)
// with DefaultSkew and DefaultGap; refit it for another machine with
// --calibrate.
var DefaultWindow = Dist{Kind: Exp, A: 283 * time.Nanosecond}

// DefaultSkew is how far apart the CPUs' client threads start a burst
// (barrier release plus the pod's own stack before the SYN reaches the node).
var DefaultSkew = Dist{Kind: Uniform, A: 0, B: 10 * time.Microsecond}

// DefaultGap is one connect() of a client thread on a veth path: the lab's
// median connect latency is about 15 µs, and it varies, so that the CPUs'
// threads drift apart after the first connect of a burst (with a constant
// gap the second SYNs of a burst would race as often as the first, which
// the lab's multi-address SNAT runs contradict; VALIDATION.md).
var DefaultGap = Dist{Kind: Exp, A: 15 * time.Microsecond}

// ConnectionsFor is the connections a rate sends in d, rounded up (and more
// than MaxSYNs when it is too much to simulate).
func ConnectionsFor(rate float64, d time.Duration) int {
	n := math.Ceil(rate * d.Seconds())
	if n > MaxSYNs {
		return MaxSYNs + 1
	}
	return max(1, int(n))
}

// MaxConnections is the most connections a scenario may have with
// synRetries: MaxSYNs, counting up to three SYNs a connection.
func MaxConnections(synRetries int) int {
	return MaxSYNs / (1 + min(max(synRetries, 0), 2))
}

// MaxSpan bounds the simulated time over which a scenario starts its
// connections, so that every event time fits the nanosecond clock (292
// years) even after a long Poisson gap, retransmissions and timeouts.
const MaxSpan = 365 * 24 * time.Hour

// RTOMax is TCP_RTO_MAX (net.ipv4.tcp_rto_max_ms, 120 s by default): a
// SYN's retransmission timeout doubles up to it.
const RTOMax = 120 * time.Second

// Backoff is the time from a connection's first SYN to its timeout k (when
// retransmission k goes): k timeouts, the first rto, the first linear+1 of
// them rto each (tcp_syn_linear_timeouts), then each twice the one before,
// up to RTOMax. With linear 0 that is (2^k - 1) rto while no timeout
// reaches RTOMax.
func Backoff(k int, rto time.Duration, linear int) time.Duration {
	var t time.Duration
	for i, d := 1, rto; i <= k; i++ {
		t += d
		if i > linear {
			d = min(2*d, RTOMax)
		}
	}
	return t
}

// MaxRetransmissions is the most SYN retransmissions a connect() makes
// with synRetries and linear tcp_syn_linear_timeouts (6.5+):
// tcp_write_timeout adds the linear timeouts' own. Result.Delayed counts a
// failed connection one above it.
func MaxRetransmissions(synRetries, linear int) int {
	return synRetries + linear
}

// MaxSynLinearTimeouts is the largest net.ipv4.tcp_syn_linear_timeouts the
// kernel accepts (MAX_TCP_SYNCNT).
const MaxSynLinearTimeouts = 127

// linearTimeouts is the scenario's tcp_syn_linear_timeouts: the override,
// else the era's default.
func (c *Config) linearTimeouts() int {
	if c.SynLinearTimeouts != nil {
		return *c.SynLinearTimeouts
	}
	return c.Era.SynLinearTimeouts()
}

// validateLinear checks the tcp_syn_linear_timeouts override: a TCP
// setting of eras that have the sysctl, within the kernel's range.
func (c *Config) validateLinear() error {
	n := c.SynLinearTimeouts
	switch {
	case n == nil:
		return nil
	case c.Proto == UDP:
		return fieldErr("syn-linear-timeouts", "a TCP setting: UDP queries are not retransmitted by the kernel")
	case !c.Era.HasSynLinearTimeouts():
		return fieldErr("syn-linear-timeouts", "era %v has no net.ipv4.tcp_syn_linear_timeouts (added in 6.5): its SYN timeouts double from the first", c.Era)
	case *n < 0 || *n > MaxSynLinearTimeouts:
		return fieldErr("syn-linear-timeouts", "%d is out of range 0..%d", *n, MaxSynLinearTimeouts)
	}
	return nil
}

// synTimeout is tcp_model_timeout for a connect() with retries SYN
// retries: the time after its first SYN from which a timeout gives up,
// whatever the linear timeouts did.
func synTimeout(retries int, rto time.Duration) time.Duration { return Backoff(retries+1, rto, 0) }

func (c *Config) defaults() {
	if c.Proto == UDP {
		c.udpDefaults()
	}
	if c.Era == (natmodel.Era{}) {
		c.Era = natmodel.Era{Major: 6, Minor: 5}
	}
	if c.Workload == "" {
		c.Workload = labnet.SamePort
	}
	if c.Pods == 0 {
		c.Pods = DefaultPods
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.Servers == 0 {
		c.Servers = 1
	}
	if c.Connections == 0 {
		if c.Duration > 0 && c.Rate > 0 {
			c.Connections = ConnectionsFor(c.Rate, c.Duration)
		} else {
			c.Connections = DefaultConnections
		}
	}
	if c.PortRange == [2]uint16{} {
		c.PortRange = [2]uint16{32768, 60999}
	}
	if c.Chooser == "" {
		c.Chooser = Hashed
	}
	if c.BasePort == 0 {
		c.BasePort = 10000
	}
	if c.PortSpan == 0 {
		c.PortSpan = 40000
	}
	if c.Dport == 0 {
		c.Dport = 80
	}
	if c.Window == (Dist{}) {
		c.Window = DefaultWindow
	}
	if c.Gap == (Dist{}) {
		c.Gap = DefaultGap
	}
	if c.Skew == (Dist{}) {
		c.Skew = DefaultSkew
	}
	if c.Lifetime == (Dist{}) {
		c.Lifetime = Dist{Kind: Const, A: time.Millisecond}
	}
	if c.CTTimeWait == 0 {
		c.CTTimeWait = 120 * time.Second
	}
	if c.ClientTimeWait == 0 {
		c.ClientTimeWait = 60 * time.Second
	}
	if c.SynRetries == 0 {
		c.SynRetries = 6
	}
	if c.RTO == 0 {
		c.RTO = time.Second
	}
	if c.ServerTimeWait == 0 {
		c.ServerTimeWait = DefaultServerTimeWait
	}
	if c.TSOffsets == "" {
		c.TSOffsets = tsoffset.PerPort
	}
}

// FieldError is a setting of a Config that cannot work. Field is the name of
// the setting, the same as the CLI flag's.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, a...)}
}

// Validate applies the defaults and checks c; an error is a *FieldError
// naming the offending setting as the CLI flag of the same name.
func (c *Config) Validate() error {
	derived := c.Connections == 0 && c.Duration > 0 && c.Rate > 0
	c.defaults()
	if err := c.validateProto(); err != nil {
		return err
	}
	switch c.Workload {
	case labnet.SamePort, labnet.Ephemeral, labnet.Pairs:
		if c.Rate < 0 || c.Rate > 1e8 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
			return fieldErr("rate", "%v connections/s is out of range [0, 1e8]", c.Rate)
		}
	case labnet.Steady, labnet.Short:
		if !(c.Rate > 0) || c.Rate > 1e8 || math.IsInf(c.Rate, 0) {
			return fieldErr("rate", "%v connections/s is out of range (0, 1e8] (%s needs a rate)", c.Rate, c.Workload)
		}
	default:
		return fieldErr("workload", "unknown workload %q: want %s", c.Workload, strings.Join(labnet.Workloads, ", "))
	}
	if err := c.validatePAWS(); err != nil {
		return err
	}
	if c.Pods < 1 || c.Pods > MaxPods {
		return fieldErr("pods", "%d is out of range 1..%d", c.Pods, MaxPods)
	}
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return fieldErr("cpus", "%d is out of range 1..%d", c.CPUs, MaxCPUs)
	}
	if c.Servers < 1 || c.Servers > 250 {
		return fieldErr("servers", "%d is out of range 1..250", c.Servers)
	}
	if err := c.validateCount(derived); err != nil {
		return err
	}
	if c.Pods*c.Servers > 1<<24 {
		return fieldErr("pods", "%d pods × %d servers is too much per-destination state", c.Pods, c.Servers)
	}
	// Each pod and server that a connection uses gets a bitset of the
	// pod's ports towards it.
	if pairs := min(c.Pods*c.Servers, c.Connections); pairs > MaxPortBitsets {
		return fieldErr("pods", "the connections would use %d of the %d pods × %d servers, each with 8 KiB of port state: more than %d (4 GiB); use fewer pods, servers or connections",
			pairs, c.Pods, c.Servers, MaxPortBitsets)
	}
	if c.PortRange[0] < 1 || c.PortRange[1] < c.PortRange[0] {
		return fieldErr("port-range", "%d-%d is empty or includes 0", c.PortRange[0], c.PortRange[1])
	}
	switch c.Chooser {
	case Hashed, UniformPorts, Sequential:
	default:
		return fieldErr("chooser", "unknown %q: want hashed, uniform or sequential", c.Chooser)
	}
	if c.PortSpan < 1 || int(c.BasePort)+c.PortSpan-1 > 65535 {
		return fieldErr("base-port", "%d + span %d goes past 65535", c.BasePort, c.PortSpan)
	}
	if c.SynRetries < 0 || c.SynRetries > 20 {
		return fieldErr("syn-retries", "%d is out of range 0..20", c.SynRetries)
	}
	if err := c.validateLinear(); err != nil {
		return err
	}
	if c.NAT.Action == natrule.SNAT && (!c.NAT.AddrMin.Is4() || !c.NAT.AddrMax.Is4()) {
		return fieldErr("nat", "%q: the simulator models IPv4 SNAT only", c.NAT)
	}
	if _, err := rangeOf(c.NAT); err != nil {
		return fieldErr("nat", "%q: %w", c.NAT, err)
	}
	if c.RTO < 0 || c.RTO > RTOMax {
		return fieldErr("rto", "%v is out of range (0, %v] (TCP_RTO_MAX)", c.RTO, RTOMax)
	}
	return nil
}

// validateCount checks the connections and the time over which they start.
// derived says the count is rate × duration, so that a count too large is
// the duration's error.
func (c *Config) validateCount(derived bool) error {
	field, most := "connections", MaxConnections(c.SynRetries)
	if derived {
		field = "duration"
	}
	if c.Connections < 1 || c.Connections > most {
		if derived {
			return fieldErr(field, "%v at %v/s is %.4g connections, more than %d, the most with syn-retries %d (a run sends at most %d SYNs)",
				c.Duration, c.Rate, math.Ceil(c.Rate*c.Duration.Seconds()), most, c.SynRetries, MaxSYNs)
		}
		return fieldErr(field, "%d is out of range 1..%d (the most with syn-retries %d: a run sends at most %d SYNs)", c.Connections, most, c.SynRetries, MaxSYNs)
	}
	// Connections (paced bursts: of at most Pods each) start 1/Rate apart.
	if c.Rate > 0 {
		if span := float64(max(c.Connections, c.Pods)) / c.Rate; span > MaxSpan.Seconds() {
			return fieldErr("rate", "%v/s starts %d connections over %.3g s, more than a year of simulated time: raise the rate or lower the connections",
				c.Rate, c.Connections, span)
		}
	}
	return nil
}
