package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/tool"
	"github.com/snatrace/snatrace/trace"
)

func init() { register(newLabCmd) }

// labFlags are the raw flag values of snatrace lab.
type labFlags struct {
	nats, backends []string
	workload       string
	rate           string
	portRange      string
	asJSON         bool
	reportFile     string
	failOnRace     bool
	proto          string
	cfg            lab.Config
	vm             vmFlags
}

const labLong = `snatrace lab proves the SNAT source-port race on the running kernel.

It builds throwaway network namespaces (a node that NATs N pods towards a
server, all named snt-<id>-...), installs each NAT mode on the node, sends a
bounded workload from client threads pinned one per CPU, and counts with the
kernel's own counters: conntrack insert_failed/drop on the node (from /proc by
column name, and from ctnetlink), the pods' SYN retransmissions and the
server's listen drops. Modes alternate round by round so noise hits them alike.
The host's rules, links and sysctls are never touched; everything is removed
at the end, on error and on Ctrl-C (after SIGKILL: snatrace lab cleanup).

NAT modes use nft statement syntax:
  masquerade | masquerade random | masquerade fully-random |
  masquerade to :1024-1100 | snat to 198.51.100.1[-198.51.100.9][:2000-2100] [random,fully-random,persistent] | none

Workloads:
  same-port  every pod connects from the same source port in synchronized
             bursts: the deterministic trigger of the port-preservation race
  ephemeral  bursts with kernel-chosen source ports (narrow them with --port-range)
  steady     a constant (or --poisson) --rate of connections, kernel-chosen ports
  short      HTTP/1.0-style connections: one byte each way, the server closes
             first and keeps the TIME_WAIT; each CPU's client runs them one
             after another (or paced at --rate), each mode to its own server
             port. Narrow the NAT range (masquerade to :20000-20015
             fully-random) and the pods' --port-range to cycle the tuples
             within the server's 60 s TIME_WAIT in seconds: on a kernel with
             per-port TCP timestamp offsets, SYNs remapped onto a tuple the
             server still holds are rejected by PAWS (causes.paws_timewait)
  pairs      (udp) one socket per pod sends an A and an AAAA query at the same
             instant from two CPUs, as glibc's parallel lookups can race

UDP (--proto udp): the servers run a resolver-like responder on port 53 that
answers every query; the pods' clients wait --udp-timeout (5s, glibc's
timeout) for each answer and send it again, up to --udp-attempts (2) times.
same-port bursts are the cross-pod trigger (two pods SNATed onto one node
port towards one resolver clash in the reply direction, which no kernel
resolves); pairs are the same-socket variant that kernels resolve
(clash_resolve rises, nothing is lost). --service sends the queries to a
cluster-DNS service address (10.96.0.10:53) that the node DNATs to one of
--servers at random per flow, as kube-proxy does. Lost queries are accounted
with the node's insert_failed/drop/clash_resolve (per CPU) and the pods' and
servers' Udp counters. Waits run concurrently: a round that lost queries
takes one timeout longer, however many it lost.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Without it, use snatrace sim.

On another kernel: --kernel FILE (a bzImage, or a Debian linux-image .deb)
boots it under QEMU (KVM if /dev/kvm can run it — a probe boot checks, as
under a nested hypervisor it often cannot — multi-threaded TCG otherwise;
SNATRACE_VM_ACCEL=kvm or tcg decides instead) from an initramfs holding this
snatrace, the kernel's netfilter, nftables, iptables, conntrack, veth and
bridge modules (loaded on demand, as on a distribution system) and the host's
nft and iptables tools, runs the same lab with the same flags inside and
prints the same report with a VM line. This needs no root, only
qemu-system-x86; nothing on the host changes.

Interrupted (SIGINT, SIGTERM), it cleans up, prints what the completed rounds
measured (the round in flight is named, not counted) and exits 130 (SIGINT) or
143 (SIGTERM); in a VM interrupted before its guest reported, the report
counts nothing and says so (stopped: interrupted).`

func newLabCmd() *cobra.Command {
	var fl labFlags
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Reproduce the SNAT port race on this kernel, side by side with its fixes (root)",
		Long:  labLong,
		Example: `  sudo snatrace lab
  sudo snatrace lab --nat masquerade --until 10
  sudo snatrace lab --nat masquerade --backend nft --backend iptables-nft --backend iptables-legacy
  sudo snatrace lab --workload ephemeral --pods 32 --port-range 32768-32867 --json
  sudo snatrace lab --workload steady --rate 2000/s --duration 10s --report lab.html
  sudo snatrace lab --workload short --pods 1 --port-range 40000-40015 --connections 300 \
      --nat masquerade --nat "masquerade to :20000-20015 fully-random"
  sudo snatrace lab --proto udp --workload same-port --until 10 --udp-timeout 1s
  sudo snatrace lab --proto udp --workload pairs --service --servers 3
  snatrace lab --kernel linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb --until 10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := fl.config(cmd)
			if err != nil {
				return err
			}
			if err := fl.vm.check(cmd); err != nil {
				return err
			}
			if fl.vm.kernel != "" {
				return runLabVM(cmd, fl, cfg)
			}
			return runLab(cmd, fl, cfg)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&fl.nats, "nat", nil, "NAT mode to test, nft syntax; repeat to compare (default: masquerade, masquerade fully-random)")
	f.StringArrayVar(&fl.backends, "backend", nil, "rule backend: nft, iptables-nft, iptables-legacy; repeat to compare (default nft)")
	f.StringVar(&fl.workload, "workload", lab.SamePort, "traffic: same-port, ephemeral, steady or short; pairs with --proto udp")
	f.StringVar(&fl.proto, "proto", lab.TCP, "protocol: tcp (connections) or udp (resolver-like queries)")
	f.DurationVar(&fl.cfg.UDP.Timeout, "udp-timeout", lab.DefaultUDPTimeout, "udp: how long a client waits for an answer before it sends the query again")
	f.IntVar(&fl.cfg.UDP.Attempts, "udp-attempts", lab.DefaultUDPAttempts, "udp: transmissions of a query at most (glibc attempts:)")
	f.BoolVar(&fl.cfg.UDP.Service, "service", false, "udp: query a cluster-DNS service address that the node DNATs to one of --servers at random")
	f.IntVar(&fl.cfg.Pods, "pods", 0, "client pod namespaces (default: one per CPU for same-port, 16 otherwise)")
	f.IntVar(&fl.cfg.Servers, "servers", 1, "server namespaces, each behind its own uplink")
	f.IntVar(&fl.cfg.Connections, "connections", lab.DefaultConnections, "connect()s per NAT mode and backend (steady with --duration: rate x duration)")
	f.DurationVar(&fl.cfg.Duration, "duration", 0, "bound the traffic's wall time (steady: connections = rate x duration)")
	f.StringVar(&fl.rate, "rate", "", "steady and short: connections per second, e.g. 2000/s (steady's default 1000/s; short's: as fast as connections end)")
	f.BoolVar(&fl.cfg.Workload.Poisson, "poisson", false, "steady and short with --rate: Poisson arrivals instead of evenly spaced")
	f.StringVar(&fl.portRange, "port-range", "", "set the pods' ip_local_port_range, e.g. 32768-32867")
	f.IntVar(&fl.cfg.Until, "until", 0, "stop once a mode has N SNAT clashes confirmed by the kernel counters")
	f.IntVar(&fl.cfg.RoundSize, "round-size", lab.DefaultRoundSize, "connections per round; modes alternate every round")
	f.DurationVar(&fl.cfg.Timeout, "timeout", lab.DefaultTimeout, "a connection still pending after this counts as failed")
	f.Uint64Var(&fl.cfg.Seed, "seed", 1, "seed of the workload's random choices")
	f.BoolVar(&fl.asJSON, "json", false, "print one JSON document on stdout")
	f.StringVar(&fl.reportFile, "report", "", "also write a self-contained HTML report with latency plots")
	f.BoolVar(&fl.cfg.Trace, "trace", false, "attach the eBPF tracer to the node and pair every SNAT-clash drop with a delayed connection (CAP_BPF, CAP_PERFMON, kernel BTF)")
	f.BoolVar(&fl.failOnRace, "fail-on-race", false, "exit 1 if the first mode shows any SNAT clash")
	fl.vm.register(f)
	cmd.AddCommand(newLabCleanupCmd())
	return cmd
}

// config turns the flags into a validated lab configuration: every usage
// error is found here, before anything is built.
func (fl *labFlags) config(cmd *cobra.Command) (lab.Config, error) {
	cfg := fl.cfg
	for _, s := range fl.nats {
		m, err := natrule.ParseMode(s)
		if err != nil {
			return cfg, usageErr("--nat: %w", err)
		}
		cfg.Modes = append(cfg.Modes, m)
	}
	for _, s := range fl.backends {
		b, err := natrule.ParseBackend(s)
		if err != nil {
			return cfg, usageErr("--backend: %w", err)
		}
		cfg.Backends = append(cfg.Backends, b)
	}
	cfg.Workload.Name = fl.workload
	if err := fl.protoConfig(cmd, &cfg); err != nil {
		return cfg, err
	}
	if fl.rate != "" {
		r, err := parseRate(fl.rate)
		if err != nil {
			return cfg, usageErr("--rate: %w", err)
		}
		cfg.Workload.Rate = r
	}
	changed := cmd.Flags().Changed
	switch {
	case !changed("connections"):
		cfg.Connections = 0 // lab's default: rate x duration for steady
	case cfg.Connections <= 0:
		return cfg, usageErr("--connections: %d must be positive", cfg.Connections)
	}
	if changed("timeout") && cfg.Timeout <= 0 {
		return cfg, usageErr("--timeout: %v must be positive", cfg.Timeout)
	}
	if fl.portRange != "" {
		lo, hi, err := parsePortRange(fl.portRange)
		if err != nil {
			return cfg, usageErr("--port-range: %w", err)
		}
		cfg.PortRange = [2]uint16{lo, hi}
	}
	if fl.reportFile != "" && !strings.HasSuffix(fl.reportFile, ".html") {
		return cfg, usageErr("--report: %q must end in .html", fl.reportFile)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, usageErr("%w", err)
	}
	return cfg, nil
}

// protoConfig sets the protocol and, for udp, its client; the udp flags
// are usage errors with tcp.
func (fl *labFlags) protoConfig(cmd *cobra.Command, cfg *lab.Config) error {
	changed := cmd.Flags().Changed
	switch fl.proto {
	case lab.UDP:
		if cfg.UDP.Timeout <= 0 {
			return usageErr("--udp-timeout: %v must be positive", cfg.UDP.Timeout)
		}
		if cfg.UDP.Attempts < 1 || cfg.UDP.Attempts > lab.MaxUDPAttempts {
			return usageErr("--udp-attempts: %d is out of range 1..%d", cfg.UDP.Attempts, lab.MaxUDPAttempts)
		}
	case lab.TCP:
		for _, name := range []string{"udp-timeout", "udp-attempts", "service"} {
			if changed(name) {
				return usageErr("--%s: only with --proto udp", name)
			}
		}
		cfg.UDP = lab.UDPConfig{}
	default:
		return usageErr("--proto: %q is not tcp or udp", fl.proto)
	}
	cfg.Proto = fl.proto
	if fl.proto == lab.UDP && changed("rate") || changed("poisson") && fl.proto == lab.UDP {
		return usageErr("--rate/--poisson: the udp workloads send bursts (same-port, ephemeral, pairs)")
	}
	if fl.proto == lab.UDP && !changed("round-size") {
		cfg.RoundSize = 0 // the udp default
	}
	return nil
}

func runLab(cmd *cobra.Command, fl labFlags, cfg lab.Config) error {
	stderr := cmd.ErrOrStderr()
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = func(p lab.Progress) {
			fmt.Fprintf(stderr, "\r\033[K%s %5.1f%%  %d/%d connections  (%s: %d clashes so far)",
				bar(p.Done, p.Total, 30), 100*float64(p.Done)/float64(max(1, p.Total)), p.Done, p.Total, p.Mode, p.Clashes)
		}
	}
	rep, err := lab.Run(cmd.Context(), cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	var pe *lab.PrivilegeError
	switch {
	case errors.As(err, &pe), tool.IsMissing(err), errors.Is(err, lab.ErrNoConntrack), errors.Is(err, trace.ErrMissing):
		return envErr(err)
	case err != nil && rep == nil:
		return envErr(err)
	}
	if werr := writeLab(cmd.OutOrStdout(), stderr, fl, rep); werr != nil {
		return envErr(werr)
	}
	if errors.Is(err, lab.ErrInterrupted) {
		code, ok := interrupted(cmd.Context())
		if !ok {
			code = exitUsage
		}
		return &exitError{code: code, err: err}
	}
	if err != nil {
		return envErr(err)
	}
	if fl.failOnRace && len(rep.Results) > 0 && rep.Results[0].Conntrack.InsertFailed > 0 {
		return silentExit(exitFindings)
	}
	return nil
}

// writeLab prints the report (JSON or text) and writes the HTML page.
func writeLab(stdout, stderr io.Writer, fl labFlags, rep *lab.Report) error {
	if fl.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := lab.WriteText(stdout, rep); err != nil {
		return err
	}
	if fl.reportFile != "" {
		if err := lab.WriteHTML(fl.reportFile, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "report written to %s\n", fl.reportFile)
	}
	return nil
}

func newLabCleanupCmd() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the namespaces a killed lab run left behind",
		Long: `Removes every network namespace whose name starts with --prefix (default snt-,
i.e. all of them). A lab removes its own namespaces on success, error, Ctrl-C
and SIGTERM; only a SIGKILLed run leaves any.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckPrivileges(); err != nil {
				return envErr(err)
			}
			names, err := lab.Cleanup(prefix)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", n)
			}
			if err != nil {
				return envErr(err)
			}
			if len(names) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to remove")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", lab.NamePrefix, "remove namespaces whose name starts with this (must start with snt-)")
	return cmd
}

func bar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = min(width, width*done/total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// parseRate accepts "2000", "2000/s", "120/m".
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(s, "/")
	r, err := strconv.ParseFloat(num, 64)
	if err != nil || r <= 0 {
		return 0, fmt.Errorf("%q: want a positive rate such as 2000/s", s)
	}
	switch unit {
	case "", "s":
	case "m":
		r /= 60
	default:
		return 0, fmt.Errorf("%q: unit must be /s or /m", s)
	}
	return r, nil
}

// parsePortRange reads an ip_local_port_range for pods: natrule's port
// range, within the unprivileged ports.
func parsePortRange(s string) (uint16, uint16, error) {
	lo, hi, err := natrule.ParsePortRange(s)
	if err != nil || lo < 1024 || !strings.Contains(s, "-") {
		return 0, 0, fmt.Errorf("%q: want LOW-HIGH with 1024 <= LOW <= HIGH <= 65535", s)
	}
	return lo, hi, nil
}
