//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
)

// CheckPrivileges reports the capabilities the lab needs and lacks.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	var missing []string
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}} {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	if missing != nil {
		return &PrivilegeError{Missing: missing}
	}
	return nil
}

// checkBinaries fails early when a backend's userspace tool is missing.
func checkBinaries(backends []natrule.Backend) error {
	need := map[natrule.Backend]string{natrule.IptablesNFT: "iptables-nft-restore", natrule.IptablesLegacy: "iptables-legacy-restore"}
	for _, b := range backends {
		if bin, ok := need[b]; ok {
			if _, err := exec.LookPath(bin); err != nil {
				return &natrule.MissingBinaryError{Binary: bin, Package: "iptables"}
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
}

// Open validates cfg, checks privileges, binaries and kernel features, then
// builds the topology and starts the servers. Modes in cfg only matter for
// their snat addresses; Install chooses the rule.
func Open(ctx context.Context, cfg Config) (s *Session, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkBinaries(cfg.Backends); err != nil {
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
	if s.Topo, err = Build(ctx, TopologyConfig{Prefix: cfg.Prefix, Pods: cfg.Pods, Servers: cfg.Servers, PortRange: cfg.PortRange}); err != nil {
		return s, fmt.Errorf("building lab topology: %w", err)
	}
	if err := addSNATAddresses(s.Topo, cfg.Modes); err != nil {
		return s, err
	}
	if _, err := readNodeProc(s.Topo.Node); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, ErrNoConntrack
		}
		return s, err
	}
	s.d = &driver{topo: s.Topo, dport: cfg.Workload.Dport, cpus: cpus, timeout: cfg.Timeout}
	if s.stopListen, err = s.d.listen(ctx); err != nil {
		return s, err
	}
	s.plan = newPlanner(cfg.Workload, cfg.Pods, cfg.Servers, cfg.Seed)
	return s, nil
}

// OpenNode is Open followed by Install of mode (nft statement syntax)
// through backend: a NAT node ready for Round, for other packages' tests.
func OpenNode(ctx context.Context, cfg Config, mode string, backend natrule.Backend) (*Session, error) {
	m, err := natrule.ParseMode(mode)
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Install(ctx, m, backend); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Node returns the node namespace, where the NAT rule and conntrack live.
func (s *Session) Node() *netns.NS { return s.Topo.Node }

// NodeInode returns the inode number of the node's network namespace, the
// identity the eBPF tracer filters on.
func (s *Session) NodeInode() (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(s.Topo.Node.Fd(), &st); err != nil {
		return 0, fmt.Errorf("reading the inode of %s: %w", s.Topo.Node, err)
	}
	return uint32(st.Ino), nil
}

// Install puts mode on the node through backend (one rule per uplink:
// ip saddr 10.98.0.0/16 oifname "upK" meta l4proto tcp MODE), removing what
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
	var rules []natrule.Rule
	for _, srv := range s.Topo.Servers {
		rules = append(rules, natrule.Rule{Src: PodNet, OutIface: srv.Uplink, Proto: "tcp", Mode: mode})
	}
	return rules
}

// Round sends about n connections of the session's workload under whatever
// rule the node has now, waits for every handshake, and returns them
// accounted in a Result (NAT and Backend left empty). until > 0 ends the
// round once the node has counted that many more insert failures.
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
	before, err := s.Topo.read()
	if err != nil {
		return false, err
	}
	var calls atomic.Int64
	var reached atomic.Bool
	stop := func() bool {
		if until == 0 || calls.Add(1)%4 != 0 {
			return false
		}
		snap, err := readNodeProc(s.Topo.Node)
		if err == nil && ctstatDelta(before.proc, snap) >= until {
			reached.Store(true)
		}
		return reached.Load()
	}
	mark := 0
	if s.trace != nil {
		mark = s.trace.mark()
	}
	atts, err := s.d.round(ctx, s.plan.next(n), stop)
	if err != nil {
		return false, err
	}
	after, err := s.Topo.read()
	if err != nil {
		return false, err
	}
	delta := before.delta(after)
	r.add(atts, delta)
	if s.trace != nil {
		tr := s.matchTrace(atts, s.trace.since(mark))
		if r.Trace == nil {
			r.Trace = &TraceResult{}
		}
		r.Trace.add(tr)
	}
	return until > 0 && delta.proc.InsertFailed >= until, nil
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

// Run builds a topology, runs cfg's workload under every mode and backend in
// alternating rounds, removes everything it made, and returns the report. A
// cancelled ctx (SIGINT) ends the run early: the partial report comes back
// with ErrInterrupted. Run checks privileges, binaries and kernel features
// before it builds anything.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if rep != nil {
			rep.Seconds = time.Since(s.t0).Seconds()
		}
	}()
	if cfg.Trace {
		if err := s.EnableTrace(ctx); err != nil {
			return nil, err
		}
	}

	type variant struct {
		mode    natrule.Mode
		backend natrule.Backend
	}
	var vs []variant
	for _, m := range cfg.Modes {
		for _, b := range cfg.Backends {
			vs = append(vs, variant{m, b})
		}
	}
	rep = &Report{
		Kernel: kernelRelease(), CPUs: runtime.NumCPU(), Prefix: cfg.Prefix,
		Workload: WorkloadReport{
			Name: cfg.Workload.Name, Pods: cfg.Pods, Servers: cfg.Servers, PortRange: cfg.PortRange,
			Rate: cfg.Workload.Rate, Poisson: cfg.Workload.Poisson,
		},
	}
	for _, v := range vs {
		rep.Results = append(rep.Results, &Result{NAT: v.mode.String(), Backend: string(v.backend)})
	}
	// runRound runs n connections under variant i; until > 0 ends it once
	// the node has counted that many more insert failures.
	runRound := func(i, n int, until uint64) (bool, error) {
		if err := s.Install(ctx, vs[i].mode, vs[i].backend); err != nil {
			return false, err
		}
		res := rep.Results[i]
		before := res.Connections
		hit, err := s.round(ctx, res, n, until)
		if err != nil {
			return false, err
		}
		sent := res.Connections - before
		rep.Workload.Connections += sent
		if cfg.Workload.Name != Steady {
			rep.Workload.Bursts += (sent + cfg.Pods - 1) / cfg.Pods
		}
		if cfg.Progress != nil {
			var done int
			for _, r := range rep.Results {
				done += r.Connections
			}
			cfg.Progress(Progress{Done: done, Total: cfg.Connections * len(vs), Clashes: res.Conntrack.InsertFailed, Mode: vs[i].mode.String()})
		}
		return hit, nil
	}

	trafficStart := time.Now()
	rep.Stopped = "connections"
	// finish computes the report's figures; a run that fails midway still
	// reports what it measured before the failure.
	finish := func() {
		rep.TrafficSeconds = time.Since(trafficStart).Seconds()
		if rep.TrafficSeconds > 0 {
			rep.ConnectRate = float64(rep.Workload.Connections) / rep.TrafficSeconds
		}
		for _, r := range rep.Results {
			r.finish()
		}
		rep.Verdict = verdict(rep.Results)
	}
	for r := 0; ; r++ {
		i := r % len(vs)
		if ctx.Err() != nil {
			rep.Stopped = "interrupted"
			break
		}
		if i == 0 && cfg.Duration > 0 && time.Since(trafficStart) >= cfg.Duration {
			rep.Stopped = "duration"
			break
		}
		all := true
		for _, res := range rep.Results {
			all = all && res.Connections >= cfg.Connections
		}
		if all {
			break
		}
		res := rep.Results[i]
		n := min(cfg.RoundSize, cfg.Connections-res.Connections)
		if n <= 0 {
			continue
		}
		var until uint64
		if cfg.Until > 0 {
			until = uint64(cfg.Until) - min(uint64(cfg.Until), res.Conntrack.InsertFailed)
		}
		hit, err := runRound(i, n, until)
		if err != nil {
			rep.Stopped = "error"
			finish()
			return rep, err
		}
		if hit || (cfg.Until > 0 && res.Conntrack.InsertFailed >= uint64(cfg.Until)) {
			// Give every other variant as many connections, then stop.
			rep.Stopped = "until"
			for j, other := range rep.Results {
				for ctx.Err() == nil && j != i && other.Connections < res.Connections {
					if _, err := runRound(j, min(cfg.RoundSize, res.Connections-other.Connections), 0); err != nil {
						rep.Stopped = "error"
						finish()
						return rep, err
					}
				}
			}
			break
		}
	}
	finish()
	if ctx.Err() != nil {
		rep.Stopped = "interrupted"
		return rep, ErrInterrupted
	}
	return rep, nil
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

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// addSNATAddresses puts the addresses of snat modes on the node's first
// uplink, so the server's replies to them come back.
func addSNATAddresses(t *Topology, modes []natrule.Mode) error {
	h, err := netlink.NewHandleAt(nsHandle(t.Node))
	if err != nil {
		return fmt.Errorf("opening netlink in %s: %w", t.Node, err)
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
