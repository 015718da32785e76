// Package lab reproduces the SNAT source-port race on the running kernel.
//
// It builds a node namespace that routes and NATs a set of pod namespaces
// towards one or more server namespaces (all through netlink; the host
// namespace is never touched), installs each NAT mode under test on the node,
// sends bounded workloads from client threads pinned one per CPU, and accounts
// for every delayed connection with the kernel's own counters: the node's
// conntrack statistics (from /proc by column name and from ctnetlink), the
// pods' TcpExt TCPSynRetrans and the servers' ListenDrops. Modes are compared
// in alternating rounds on one topology, so machine noise hits them alike.
package lab

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natrule"
)

// Config is one lab run.
type Config struct {
	// Modes are the NAT modes compared, the first being the baseline of the
	// verdict. Each runs through every backend in Backends.
	Modes    []natrule.Mode
	Backends []natrule.Backend

	// Proto is the traffic's protocol: TCP (connections, the default) or
	// UDP (resolver-like queries, shaped by UDP).
	Proto string
	UDP   UDPConfig

	Workload WorkloadConfig
	Pods     int
	Servers  int
	// PortRange, if set, narrows the pods' ip_local_port_range.
	PortRange [2]uint16

	// Connections is the number of connect()s per mode and backend.
	Connections int
	// Duration bounds the traffic's wall time (0 = no bound but Connections).
	Duration time.Duration
	// Until, if > 0, stops the run as soon as one mode has this many SNAT
	// clashes confirmed by the node's conntrack counters (insert_failed); the
	// other modes then get as many connections, so the comparison stays fair.
	Until int
	// RoundSize is the number of connections in one round; modes alternate
	// every round.
	RoundSize int
	// Timeout is how long a connection may take before it counts as failed.
	Timeout time.Duration
	// Seed makes the workload's choices repeatable.
	Seed uint64
	// Prefix names the run's namespaces; "" makes a fresh one.
	Prefix string
	// Trace attaches the eBPF tracer (package trace) to the node and pairs
	// every SNAT-clash drop it sees with a delayed connection.
	Trace bool
	// Progress, if set, is called after every round.
	Progress func(Progress)
}

// Progress reports a run's advance after each round.
type Progress struct {
	Done, Total int    // connections so far and planned (all modes)
	Clashes     uint64 // SNAT clashes so far under Mode
	Mode        string
}

// Defaults for the zero fields of Config.
const (
	DefaultPods        = 16 // ephemeral and steady; same-port uses one per CPU
	DefaultConnections = 20000
	DefaultRoundSize   = 2000
	DefaultTimeout     = 8 * time.Second
	DefaultDport       = 80
	DefaultRate        = 1000 // steady connections per second
	// MaxRoundSize bounds the sockets open at once (one per connection).
	MaxRoundSize = 8000
	// MaxConnections bounds one run: at ~20k connects/s this is minutes.
	MaxConnections = 2_000_000
)

// ErrInterrupted is returned with the partial report of a cancelled run.
var ErrInterrupted = errors.New("lab run interrupted")

// CutError is a round that a cancellation cut short: Sent connections left
// but their handshakes were abandoned, so the round is not accounted. It
// matches ErrInterrupted.
type CutError struct{ Sent int }

func (e *CutError) Error() string {
	return fmt.Sprintf("lab round cut short after %d connections: not counted", e.Sent)
}

// Is makes a CutError an ErrInterrupted.
func (e *CutError) Is(target error) bool { return target == ErrInterrupted }

// WithDefaults returns c with every zero field set to its default: the
// default modes and backend, one same-port pod per CPU (16 pods for the other
// workloads), a steady rate of 1000/s, and for steady traffic bounded by a
// Duration, Connections = Rate × Duration. It does not validate.
func (c Config) WithDefaults() Config {
	if len(c.Modes) == 0 {
		c.Modes = natrule.DefaultModes()
	}
	if len(c.Backends) == 0 {
		c.Backends = []natrule.Backend{natrule.Nftables}
	}
	if c.Workload.Name == "" {
		c.Workload.Name = SamePort
	}
	if c.Proto == "" {
		c.Proto = TCP
	}
	if c.Proto == UDP {
		c.udpDefaults()
	}
	if c.Workload.Dport == 0 {
		c.Workload.Dport = DefaultDport
	}
	if c.Workload.Name == Steady && c.Workload.Rate == 0 {
		c.Workload.Rate = DefaultRate
	}
	if c.Pods == 0 {
		// One same-port client per CPU is the sharpest trigger: the race is
		// between the first SYN on each CPU of a burst.
		c.Pods = DefaultPods
		if c.Workload.Name == SamePort || c.Workload.Name == Short {
			c.Pods = max(2, runtime.NumCPU())
		}
		if c.Workload.Name == Pairs {
			c.Pods = max(1, runtime.NumCPU()/2) // a pair takes two CPUs
		}
	}
	if c.Servers == 0 {
		c.Servers = 1
	}
	if c.Connections == 0 {
		c.Connections = DefaultConnections
		if c.Workload.paced() && c.Duration > 0 {
			c.Connections = max(1, int(c.Workload.Rate*c.Duration.Seconds()))
		}
	}
	if c.RoundSize == 0 {
		c.RoundSize = DefaultRoundSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Prefix == "" {
		c.Prefix = NewPrefix()
	}
	if c.Proto == UDP {
		c.fitUDPRound()
	}
	return c
}

// Validate checks a configuration that has its defaults (WithDefaults),
// naming the offending setting as the CLI flag of the same name. It does not
// change c.
func (c Config) Validate() error {
	if err := c.validateProto(); err != nil {
		return err
	}
	if err := c.Workload.validate(); err != nil {
		return err
	}
	if c.Connections < 1 || c.Connections > MaxConnections {
		return fmt.Errorf("connections: %d is out of range 1..%d", c.Connections, MaxConnections)
	}
	if c.Until < 0 {
		return fmt.Errorf("until: %d must not be negative", c.Until)
	}
	if c.Duration < 0 {
		return fmt.Errorf("duration: %v must not be negative", c.Duration)
	}
	if c.RoundSize < 1 || c.RoundSize > MaxRoundSize {
		return fmt.Errorf("round size: %d is out of range 1..%d", c.RoundSize, MaxRoundSize)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout: %v must be positive", c.Timeout)
	}
	for _, m := range c.Modes {
		if err := c.checkSNAT(m); err != nil {
			return err
		}
		for _, b := range c.Backends {
			if err := installable(m, b, c.Proto); err != nil {
				return err
			}
		}
	}
	if n := c.topologyPods(); n != c.Pods && n > MaxPods {
		return fmt.Errorf("pods: %d per mode × %d modes and backends is more than %d (the short workload gives each mode its own pods)", c.Pods, n/c.Pods, MaxPods)
	}
	return (TopologyConfig{Prefix: c.Prefix, Pods: c.topologyPods(), Servers: c.Servers, PortRange: c.PortRange}).validate()
}

// sessionRules are the node's rules for mode: one per uplink,
// ip saddr 10.98.0.0/16 oifname "upK" meta l4proto PROTO MODE.
func sessionRules(mode natrule.Mode, servers int, proto string) []natrule.Rule {
	rules := make([]natrule.Rule, servers)
	for k := range rules {
		rules[k] = natrule.Rule{Src: labnet.PodNet, OutIface: labnet.UplinkName(k), Proto: proto, Mode: mode}
	}
	return rules
}

// installable checks, before anything is built, that backend can express
// the rule the lab installs for m.
func installable(m natrule.Mode, b natrule.Backend, proto string) error {
	r := sessionRules(m, 1, proto)[0]
	var err error
	if b == natrule.Nftables {
		_, err = r.NFTStatement()
	} else {
		_, err = r.IptablesArgs()
	}
	if err != nil {
		return fmt.Errorf("nat %q: cannot be installed through %s: %w", m, b.Flag(), err)
	}
	return nil
}

// checkSNAT checks that an snat mode's addresses can live on the lab's
// first uplink.
func (c Config) checkSNAT(m natrule.Mode) error {
	if m.Action != natrule.SNAT {
		return nil
	}
	if c.Servers != 1 {
		return fmt.Errorf("nat %q: snat modes need exactly one server (the address must be on its uplink)", m)
	}
	n := 0
	for a := m.AddrMin; ; a = a.Next() {
		if !labnet.SNATHost(a) {
			return fmt.Errorf("nat %q: snat addresses must be hosts of the lab uplink %s other than %s (the server)", m, labnet.UplinkNet(0), labnet.ServerAddr(0))
		}
		if n++; n > 64 {
			return fmt.Errorf("nat %q: at most 64 snat addresses in the lab", m)
		}
		if a == m.AddrMax {
			return nil
		}
	}
}

// PrivilegeError says which capabilities the lab lacks.
type PrivilegeError struct{ Missing []string }

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("snatrace lab needs root (missing %v: network namespaces need CAP_SYS_ADMIN, links and NAT rules CAP_NET_ADMIN); `snatrace sim` predicts the race without privileges", e.Missing)
}

// ErrNoConntrack means the kernel has no connection tracking (nf_conntrack):
// it was built without it, or its module could not be loaded, neither on
// demand (by a NAT rule) nor by modprobe.
var ErrNoConntrack = errors.New("this kernel has no connection tracking (nf_conntrack): /proc/net/stat/nf_conntrack is missing even after creating a NAT rule; build it in or install its modules (nf_conntrack, nf_nat)")
