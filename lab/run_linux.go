//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/caps"
	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/tool"
)

// CheckPrivileges reports the capabilities the lab needs and lacks.
func CheckPrivileges() error {
	missing, err := caps.Missing(caps.NetAdmin, caps.SysAdmin)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &PrivilegeError{Missing: caps.Names(missing)}
	}
	return nil
}

// checkBinaries fails early when a tool that installing cfg's modes needs
// is missing (natrule.Binaries).
func checkBinaries(cfg Config) error {
	for _, b := range cfg.Backends {
		for _, m := range cfg.Modes {
			for _, bin := range natrule.Binaries(b, sessionRules(m, cfg.Servers, cfg.Proto)) {
				if _, err := (tool.Exec{}).LookPath(bin); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Session is a built lab: the topology, listening servers and the pinned
// client driver, driven round by round. Run is built on it; other packages'
// tests use it to put a real racing node under their tool (fix, trace,
// exporter). Close removes everything.
type Session struct {
	cfg        Config
	Topo       *Topology
	d          *driver
	plan       *planner
	installed  map[natrule.Backend]bool
	stopListen func()
	restore    func()
	t0         time.Time
	trace      *sessionTrace // nil unless EnableTrace
	podBase    int           // short: the first pod of the variant in flight (Config.topologyPods)
}

// Open fills in cfg's defaults, validates it, checks privileges, binaries
// and kernel features, then
// builds the topology and starts the servers. Modes in cfg only matter for
// their snat addresses; Install chooses the rule.
func Open(ctx context.Context, cfg Config) (s *Session, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkBinaries(cfg); err != nil {
		return nil, err
	}
	s = &Session{cfg: cfg, installed: map[natrule.Backend]bool{}, t0: time.Now(), restore: func() {}}
	cpus, err := clientCPUs()
	if err != nil {
		return nil, err
	}
	if old := runtime.GOMAXPROCS(0); old < len(cpus)+2 {
		// The pinned client threads hold a P each; leave room for the
		// listeners and the handshake waiters.
		runtime.GOMAXPROCS(len(cpus) + 2)
		s.restore = func() { runtime.GOMAXPROCS(old) }
	}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	if s.Topo, err = Build(ctx, TopologyConfig{Prefix: cfg.Prefix, Pods: cfg.topologyPods(), Servers: cfg.Servers, PortRange: cfg.PortRange}); err != nil {
		return s, fmt.Errorf("building lab topology: %w", err)
	}
	if err := addSNATAddresses(s.Topo, cfg.Modes); err != nil {
		return s, err
	}
	if err := ensureConntrack(ctx, s.Topo.Node, cfg.Backends[0]); err != nil {
		return s, err
	}
	s.d = &driver{topo: s.Topo, dport: cfg.Workload.Dport, cpus: cpus, timeout: cfg.Timeout, short: cfg.Workload.Name == Short}
	serve := s.d.listen
	switch {
	case cfg.Proto == UDP:
		serve = s.openUDP
	case s.d.short:
		serve = s.listenShort
	}
	if s.stopListen, err = serve(ctx); err != nil {
		return s, err
	}
	s.plan = newPlanner(cfg.Workload, cfg.Pods, cfg.Servers, cfg.Seed)
	return s, nil
}

// Node returns the node namespace, where the NAT rule and conntrack live.
func (s *Session) Node() *netns.NS { return s.Topo.Node }

// Install puts mode on the node through backend (one rule per uplink:
// ip saddr 10.98.0.0/16 oifname "upK" meta l4proto tcp|udp MODE), removing what
// the session installed through other backends.
func (s *Session) Install(ctx context.Context, mode natrule.Mode, backend natrule.Backend) error {
	for b := range s.installed {
		if b != backend {
			if err := natrule.Remove(ctx, s.Topo.Node, b); err != nil {
				return err
			}
			delete(s.installed, b)
		}
	}
	if err := natrule.Install(ctx, s.Topo.Node, backend, s.Rules(mode)); err != nil {
		return fmt.Errorf("installing %q through %s: %w", mode, backend, err)
	}
	s.installed[backend] = true
	return nil
}

// Rules returns the rules Install puts on the node for mode.
func (s *Session) Rules(mode natrule.Mode) []natrule.Rule {
	return sessionRules(mode, len(s.Topo.Servers), s.cfg.Proto)
}

// Round sends about n connections of the session's workload under whatever
// rule the node has now, waits for every handshake, and returns them
// accounted in a Result (NAT and Backend left empty). until > 0 ends the
// round once the node has counted that many more insert failures. A
// cancelled ctx ends it with the chunks already accounted, and a *CutError
// for the one in flight.
func (s *Session) Round(ctx context.Context, n int, until uint64) (*Result, error) {
	r := &Result{}
	// In chunks of RoundSize: every connection holds a descriptor until its
	// handshake ends.
	for r.Connections < n && ctx.Err() == nil {
		left := uint64(0)
		if until > 0 {
			if r.Conntrack.InsertFailed >= until {
				break
			}
			left = until - r.Conntrack.InsertFailed
		}
		before := r.Connections
		hit, err := s.round(ctx, r, min(s.cfg.RoundSize, n-r.Connections), left)
		var cut *CutError
		if errors.As(err, &cut) {
			r.Rounds = 1
			r.finish()
			return r, err
		}
		if err != nil {
			return nil, err
		}
		if hit || r.Connections == before {
			break
		}
	}
	r.Rounds = 1
	r.finish()
	return r, nil
}

// round runs one round into r and says whether until was reached.
func (s *Session) round(ctx context.Context, r *Result, n int, until uint64) (hit bool, err error) {
	if s.cfg.Proto == UDP {
		return s.udpRound(ctx, r, n, until)
	}
	before, err := s.Topo.read()
	if err != nil {
		return false, err
	}
	stop := s.untilStop(before, until)
	mark := 0
	if s.trace != nil {
		mark = s.trace.mark()
	}
	atts, err := s.d.round(ctx, s.shortPods(s.plan.next(n)), stop)
	if err != nil {
		return false, err
	}
	if ctx.Err() != nil {
		// Cut short: its pending handshakes were abandoned, so neither its
		// connections nor the kernel's counts of them can be accounted.
		return false, &CutError{Sent: len(atts)}
	}
	after, err := s.Topo.read()
	if err != nil {
		return false, err
	}
	delta := before.delta(after)
	r.add(atts, delta)
	if s.trace != nil {
		counted := s.tracedPAWS(delta.paws)
		evs := s.trace.since(mark, counted)
		tr := s.matchTrace(atts, evs)
		if s.d.short {
			tr.PAWS = s.matchPAWS(atts, evs, counted)
		}
		if r.Trace == nil {
			r.Trace = &TraceResult{}
		}
		r.Trace.add(tr)
	}
	return until > 0 && delta.proc.InsertFailed >= until, nil
}

// untilStop returns the stop function of a round that ends once the node
// has counted until more insert failures than before (never for 0). It
// reads the counters on every fourth call: it is polled between bursts.
func (s *Session) untilStop(before counters, until uint64) func() bool {
	var calls atomic.Int64
	var reached atomic.Bool
	return func() bool {
		if until == 0 || calls.Add(1)%4 != 0 {
			return false
		}
		snap, err := ctstat.ReadProcIn(s.Topo.Node)
		if err == nil && ctstatDelta(before.proc, snap) >= until {
			reached.Store(true)
		}
		return reached.Load()
	}
}

// Close stops the servers and removes every namespace of the session.
func (s *Session) Close() error {
	if s == nil {
		return nil
	}
	if s.stopListen != nil {
		s.stopListen()
	}
	if s.trace != nil {
		s.trace.close()
	}
	s.restore()
	if err := s.Topo.Close(); err != nil {
		return fmt.Errorf("removing lab namespaces: %w", err)
	}
	return nil
}

// ctstatDelta returns the insert failures counted between two readings.
func ctstatDelta(before, after ctstat.Snapshot) uint64 {
	return ctstat.Delta(before, after).Total().InsertFailed
}

// clientCPUs returns the CPUs this process may run on: one client thread each.
func clientCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("reading CPU affinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return nil, errors.New("no CPU in this process's affinity mask")
	}
	return cpus, nil
}

// addSNATAddresses puts the addresses of snat modes on the node's first
// uplink, so the server's replies to them come back.
func addSNATAddresses(t *Topology, modes []natrule.Mode) error {
	h, err := t.Node.RouteHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	up, err := h.LinkByName(t.Servers[0].Uplink)
	if err != nil {
		return fmt.Errorf("finding %s: %w", t.Servers[0].Uplink, err)
	}
	have := map[netip.Addr]bool{t.Servers[0].NodeAddr: true}
	for _, m := range modes {
		if m.Action != natrule.SNAT {
			continue
		}
		for a := m.AddrMin; ; a = a.Next() {
			if !have[a] {
				have[a] = true
				addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}
				if err := h.AddrAdd(up, addr); err != nil {
					return fmt.Errorf("adding snat address %s to %s: %w", a, up.Attrs().Name, err)
				}
			}
			if a == m.AddrMax {
				break
			}
		}
	}
	return nil
}

// ensureConntrack makes sure the node namespace has connection tracking.
// On a distribution kernel netfilter is modular and loads on demand: like
// nft and iptables, the lab lets the kernel load nf_conntrack and nf_nat by
// creating a NAT rule (through backend), and runs modprobe where it is
// installed; only what is still missing afterwards is reported.
func ensureConntrack(ctx context.Context, node *netns.NS, backend natrule.Backend) error {
	if _, err := ctstat.ReadProcIn(node); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	probe := []natrule.Rule{{Src: labnet.PodNet, Proto: "tcp", Mode: natrule.Mode{Action: natrule.Masquerade}}}
	installErr := natrule.Install(ctx, node, backend, probe)
	if installErr == nil {
		installErr = natrule.Remove(ctx, node, backend)
	}
	if _, err := ctstat.ReadProcIn(node); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	detail := "creating a NAT rule did not load nf_conntrack"
	if installErr != nil {
		detail = fmt.Sprintf("creating a NAT rule failed: %v", installErr)
	}
	exec := tool.Exec{}
	if _, err := exec.LookPath("modprobe"); err == nil {
		if _, err := exec.Run(ctx, tool.Command("modprobe", "-a", "nf_conntrack", "nf_nat")); err != nil {
			detail += fmt.Sprintf("; modprobe: %v", err)
		} else if _, err := ctstat.ReadProcIn(node); !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		detail += "; no modprobe to load it"
	}
	return fmt.Errorf("%w (%s)", ErrNoConntrack, detail)
}
