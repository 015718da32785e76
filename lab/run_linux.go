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
)

// PrivilegeError says which capabilities the lab lacks.
type PrivilegeError struct{ Missing []string }

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("snatrace lab needs root (missing %v: network namespaces need CAP_SYS_ADMIN, links and NAT rules CAP_NET_ADMIN); `snatrace sim` predicts the race without privileges", e.Missing)
}

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

// Run builds a topology, runs cfg's workload under every mode and backend in
// alternating rounds, removes everything it made, and returns the report. A
// cancelled ctx (SIGINT) ends the run early: the partial report comes back
// with ErrInterrupted. Run checks privileges, binaries and kernel features
// before it builds anything.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkBinaries(cfg.Backends); err != nil {
		return nil, err
	}
	t0 := time.Now()
	cpus, err := clientCPUs()
	if err != nil {
		return nil, err
	}
	if old := runtime.GOMAXPROCS(0); old < len(cpus)+2 {
		// The pinned client threads hold a P each; leave room for the
		// listeners and the handshake waiters.
		runtime.GOMAXPROCS(len(cpus) + 2)
		defer runtime.GOMAXPROCS(old)
	}

	topo, err := Build(ctx, TopologyConfig{Prefix: cfg.Prefix, Pods: cfg.Pods, Servers: cfg.Servers, PortRange: cfg.PortRange})
	if err != nil {
		return nil, fmt.Errorf("building lab topology: %w", err)
	}
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("removing lab namespaces: %w", cerr))
		}
		if rep != nil {
			rep.Seconds = time.Since(t0).Seconds()
		}
	}()
	if err := addSNATAddresses(topo, cfg.Modes); err != nil {
		return nil, err
	}
	if _, err := readNodeProc(topo.Node); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoConntrack
		}
		return nil, err
	}

	d := &driver{topo: topo, dport: cfg.Workload.Dport, cpus: cpus, timeout: cfg.Timeout}
	stopListen, err := d.listen(ctx)
	if err != nil {
		return nil, err
	}
	defer stopListen()

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
	plan := newPlanner(cfg.Workload, cfg.Pods, cfg.Servers, cfg.Seed)
	installed := map[natrule.Backend]bool{}
	install := func(v variant) error {
		for b := range installed {
			if b != v.backend {
				if err := natrule.Remove(ctx, topo.Node, b); err != nil {
					return err
				}
				delete(installed, b)
			}
		}
		var rules []natrule.Rule
		for _, s := range topo.Servers {
			rules = append(rules, natrule.Rule{Src: PodNet, OutIface: s.Uplink, Proto: "tcp", Mode: v.mode})
		}
		if err := natrule.Install(ctx, topo.Node, v.backend, rules); err != nil {
			return fmt.Errorf("installing %q through %s: %w", v.mode, v.backend, err)
		}
		installed[v.backend] = true
		return nil
	}
	// runRound runs n connections under variant i; until > 0 ends it once
	// the node has counted that many more insert failures.
	runRound := func(i, n int, until uint64) (hit bool, err error) {
		if err := install(vs[i]); err != nil {
			return false, err
		}
		before, err := topo.read()
		if err != nil {
			return false, err
		}
		var calls atomic.Int64
		var reached atomic.Bool
		stop := func() bool {
			if until == 0 || calls.Add(1)%4 != 0 {
				return false
			}
			s, err := readNodeProc(topo.Node)
			if err == nil && ctstatDelta(before.proc, s) >= until {
				reached.Store(true)
			}
			return reached.Load()
		}
		bursts := plan.next(n)
		atts, err := d.round(ctx, bursts, stop)
		if err != nil {
			return false, err
		}
		after, err := topo.read()
		if err != nil {
			return false, err
		}
		delta := before.delta(after)
		rep.Results[i].add(atts, delta)
		rep.Workload.Connections += len(atts)
		if cfg.Workload.Name != Steady {
			rep.Workload.Bursts += (len(atts) + cfg.Pods - 1) / cfg.Pods
		}
		if cfg.Progress != nil {
			var done int
			for _, r := range rep.Results {
				done += r.Connections
			}
			cfg.Progress(Progress{Done: done, Total: cfg.Connections * len(vs), Clashes: delta.proc.InsertFailed, Mode: vs[i].mode.String()})
		}
		return until > 0 && delta.proc.InsertFailed >= until, nil
	}

	trafficStart := time.Now()
	rep.Stopped = "connections"
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
			return rep, err
		}
		if hit || (cfg.Until > 0 && res.Conntrack.InsertFailed >= uint64(cfg.Until)) {
			// Give every other variant as many connections, then stop.
			rep.Stopped = "until"
			for j, other := range rep.Results {
				for ctx.Err() == nil && j != i && other.Connections < res.Connections {
					if _, err := runRound(j, min(cfg.RoundSize, res.Connections-other.Connections), 0); err != nil {
						return rep, err
					}
				}
			}
			break
		}
	}
	rep.TrafficSeconds = time.Since(trafficStart).Seconds()
	if rep.TrafficSeconds > 0 {
		rep.ConnectRate = float64(rep.Workload.Connections) / rep.TrafficSeconds
	}
	for _, r := range rep.Results {
		r.finish()
	}
	rep.Verdict = verdict(rep.Results)
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
