package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/sim"
	"github.com/snatrace/snatrace/tsoffset"
)

func init() { register(newSimCmd) }

// simFlags are the raw flag values of snatrace sim.
type simFlags struct {
	eras, nats                           []string
	workload, rate, portRange, chooser   string
	window, gap, skew, lifetime, preNAT  string
	sweep, plot                          string
	calibrate, predict, calibration      string
	fit                                  string
	asJSON                               bool
	workers, replicas                    int
	synLinear                            int
	cfg                                  sim.Config
	duration, ctTimeWait, clientTimeWait time.Duration
	rto                                  time.Duration
	proto                                string
}

const simLong = `snatrace sim simulates a NAT node: CPUs that each run one packet's
NAT-to-confirm window at a time, pods that choose their own source ports, and
the kernel's port choice and conntrack confirm modelled branch by branch for a
kernel era (package natmodel): legacy (before 5.0: global rover, keyed-hash
random, full scans), 5.0 (random offsets, 128 attempts halved), 6.5 (TIME_WAIT
eviction); any version such as 4.19 or 6.18 maps to its era.

It answers what the lab cannot: another kernel, a 64-core node with 500 pods,
a rate, a port range. Results are deterministic for a seed. The race window
(the time between a SYN's NAT choice and its conntrack confirm) is an input:
fit it to a real lab run with --calibrate, and check the fit on the run's other
modes with --predict.

Workloads are the lab's: same-port (every pod connects from one source port
per burst), ephemeral (bursts, ports chosen by each pod's kernel), steady
(--rate connections per second), short (--rate connections that the server
closes first: it holds the NAT tuple in TIME_WAIT for --server-timewait, and a
SYN remapped onto a held tuple is rejected by PAWS when its timestamp is
older; --ts-offsets per-port, as 7.0, stable 6.12.94 and 6.1.191 compute it,
or per-address for older kernels; the table adds a PAWS column). With --proto udp: the lab's UDP rounds of
resolver queries (same-port, ephemeral, pairs: A and AAAA from one socket on
two CPUs), with each era's UDP clash resolution (none before 4.6, 4.19's
identical entries, 5.0's same flow, 5.6's reply-only insertion) and a lost
query sent again after --udp-timeout; --pre-nat sets how long a pair has to
race (conntrack creation to NAT). In a burst every pod connects once; pods go
round-robin to one client thread per CPU, which connects for them one after
another. Steady connection i runs on CPU i mod C.

Distributions (--window, --gap, --skew, --lifetime, --pre-nat):
  5us | const:5us | uniform:0-50us | exp:20us | lognormal:10us,0.8

Sweeps vary one parameter across every --nat and --era, on all cores:
  --sweep pods=16,64,256 | cpus=2:64:x2 | rate=1000:10000:+1000 |
          range=100:28232:x4 | nat-range=64:4096:x2 | window=1:100:x10 (µs)`

func newSimCmd() *cobra.Command {
	var fl simFlags
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Predict the SNAT race for other kernels, NAT modes and loads (no root)",
		Long:  simLong,
		Example: `  snatrace sim --era 5.0 --nat masquerade --workload ephemeral --pods 64 --cpus 16 --rate 5000/s --duration 60s --seed 1
  snatrace sim --era legacy --era 6.5 --nat masquerade --nat "masquerade random" --nat "masquerade fully-random"
  snatrace sim --workload same-port --sweep pods=2:256:x2 --nat masquerade --nat "masquerade fully-random" --plot pods.svg
  snatrace sim --calibrate lab.json --json > calib.json
  snatrace sim --predict lab.json
  snatrace sim --proto udp --workload pairs --pods 1 --era 4.14,4.19,5.0,5.6 --nat masquerade --nat "masquerade fully-random" --pre-nat exp:10us`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd, &fl)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&fl.eras, "era", nil, "kernel era: legacy, 5.0, 6.5 or a version such as 4.19 or 6.18; repeat or comma-separate to compare (default 6.5)")
	f.StringArrayVar(&fl.nats, "nat", nil, "NAT mode, nft syntax; repeat to compare (default: masquerade, masquerade fully-random)")
	f.StringVar(&fl.workload, "workload", labnet.SamePort, "traffic: same-port, ephemeral, steady or short (--rate; the server closes first); pairs with --proto udp")
	f.StringVar(&fl.proto, "proto", "tcp", "tcp (connections) or udp (resolver-like queries, as snatrace lab --proto udp)")
	f.DurationVar(&fl.cfg.UDPTimeout, "udp-timeout", sim.DefaultUDPTimeout, "udp: the client's wait before it sends a lost query again")
	f.IntVar(&fl.cfg.UDPAttempts, "udp-attempts", sim.DefaultUDPAttempts, "udp: transmissions of a query at most")
	f.BoolVar(&fl.cfg.UDPService, "service", false, "udp: query a service address DNATed to one of --servers at random per flow (kube-proxy's cluster DNS)")
	f.IntVar(&fl.cfg.Pods, "pods", 16, "client pods")
	f.IntVar(&fl.cfg.CPUs, "cpus", 2, "CPUs of the NAT node")
	f.IntVar(&fl.cfg.Servers, "servers", 1, "destinations (server addresses)")
	f.IntVar(&fl.cfg.Connections, "connections", sim.DefaultConnections, "connect()s per scenario (steady with --duration: rate x duration)")
	f.StringVar(&fl.rate, "rate", "", "connections per second, e.g. 5000/s: steady arrivals, or paced bursts (default back to back)")
	f.BoolVar(&fl.cfg.Poisson, "poisson", false, "steady: Poisson arrivals instead of evenly spaced")
	f.DurationVar(&fl.duration, "duration", 0, "simulated traffic time with --rate (connections = rate x duration)")
	f.StringVar(&fl.portRange, "port-range", "32768-60999", "the pods' ip_local_port_range")
	f.StringVar(&fl.chooser, "chooser", string(sim.Hashed), "pods' ephemeral port choice: hashed (Linux), uniform or sequential")
	f.StringVar(&fl.window, "window", sim.DefaultWindow.String(), "race window between NAT choice and confirm (distribution)")
	f.StringVar(&fl.gap, "gap", sim.DefaultGap.String(), "time a client thread takes per connect() in a burst (distribution)")
	f.StringVar(&fl.skew, "skew", sim.DefaultSkew.String(), "each CPU's start offset at a burst (distribution)")
	f.StringVar(&fl.preNAT, "pre-nat", "0", "time from conntrack creation (PREROUTING) to the NAT choice (distribution)")
	f.StringVar(&fl.lifetime, "lifetime", "1ms", "how long a connection stays open (distribution)")
	f.DurationVar(&fl.ctTimeWait, "ct-timewait", 120*time.Second, "conntrack TIME_WAIT timeout")
	f.DurationVar(&fl.clientTimeWait, "client-timewait", 60*time.Second, "pod socket TIME_WAIT (the client closes first)")
	f.IntVar(&fl.cfg.SynRetries, "syn-retries", 6, "net.ipv4.tcp_syn_retries")
	f.IntVar(&fl.synLinear, "syn-linear-timeouts", 4, "net.ipv4.tcp_syn_linear_timeouts, eras 6.5 and later: the first N+1 SYN timeouts are --rto each, then they double (0: double from the first, as before 6.5)")
	f.IntVar(&fl.cfg.RoundSize, "round-size", 0, "send rounds of N connections, each waiting for the last to finish, as the lab does (0: one stream)")
	f.DurationVar(&fl.rto, "rto", time.Second, "initial SYN retransmission timeout")
	f.DurationVar(&fl.cfg.ServerTimeWait, "server-timewait", sim.DefaultServerTimeWait, "short: how long the server holds a tuple it closed first (TCP_TIMEWAIT_LEN)")
	f.StringVar((*string)(&fl.cfg.TSOffsets), "ts-offsets", string(tsoffset.PerPort), "short: the pods' TCP timestamp offsets: per-port (7.0, stable 6.12.94 and 6.1.191 on) or per-address (older)")
	f.Uint64Var(&fl.cfg.Seed, "seed", 1, "random seed; the same seed gives the same results")
	f.BoolVar(&fl.asJSON, "json", false, "print one JSON document on stdout")
	f.StringVar(&fl.sweep, "sweep", "", "vary one parameter: PARAM=V1,V2,... or PARAM=START:END:xF|+D")
	f.StringVar(&fl.plot, "plot", "", "with --sweep: write the clash rate plot to FILE.svg or FILE.png")
	f.IntVar(&fl.workers, "workers", 0, "scenarios run in parallel (default: all cores); results do not depend on it")
	f.StringVar(&fl.calibrate, "calibrate", "", "fit the race window to a lab report FILE (the output of snatrace lab --json)")
	f.StringVar(&fl.predict, "predict", "", "predict every result of a lab report FILE and compare with the measurement")
	f.StringVar(&fl.calibration, "calibration", "", "with --predict: use this --calibrate --json output instead of fitting again")
	f.StringVar(&fl.fit, "fit", "", "with --calibrate/--predict: the lab result (nat) to fit on (default: the first with clashes)")
	f.IntVar(&fl.replicas, "replicas", 4, "with --calibrate/--predict: seeds averaged per evaluation")
	return cmd
}

// baseConfig builds the shared scenario settings from the flags.
func baseConfig(cmd *cobra.Command, fl *simFlags) (sim.Config, error) {
	c := fl.cfg
	c.Workload = fl.workload
	if err := fl.protoConfig(cmd, &c); err != nil {
		return c, err
	}
	// Zero means "default" in sim.Config; on the command line it is an error.
	for _, n := range []struct {
		flag   string
		v, max int
	}{{"pods", c.Pods, sim.MaxPods}, {"cpus", c.CPUs, sim.MaxCPUs}, {"servers", c.Servers, 250}, {"connections", c.Connections, sim.MaxConnections(c.SynRetries)}} {
		if n.v < 1 || n.v > n.max {
			return c, usageErr("--%s: %d is out of range 1..%d", n.flag, n.v, n.max)
		}
	}
	if err := fl.rateConfig(cmd, &c); err != nil {
		return c, err
	}
	if err := onlyWith(cmd, c.Workload); err != nil {
		return c, err
	}
	lo, hi, err := parsePortRange(fl.portRange)
	if err != nil {
		return c, usageErr("--port-range: %w", err)
	}
	c.PortRange = [2]uint16{lo, hi}
	c.Chooser = sim.Chooser(fl.chooser)
	for _, d := range []struct {
		flag, val string
		dst       *sim.Dist
	}{{"window", fl.window, &c.Window}, {"gap", fl.gap, &c.Gap}, {"skew", fl.skew, &c.Skew}, {"lifetime", fl.lifetime, &c.Lifetime}, {"pre-nat", fl.preNAT, &c.PreNAT}} {
		v, err := sim.ParseDist(d.val)
		if err != nil {
			return c, usageErr("--%s: %w", d.flag, err)
		}
		if v == (sim.Dist{}) {
			v = sim.Dist{Kind: sim.Uniform} // an explicit zero, not "default"
		}
		*d.dst = v
	}
	for _, d := range []struct {
		flag     string
		val, max time.Duration
		dst      *time.Duration
	}{{"ct-timewait", fl.ctTimeWait, 24 * time.Hour, &c.CTTimeWait}, {"client-timewait", fl.clientTimeWait, 24 * time.Hour, &c.ClientTimeWait}, {"rto", fl.rto, sim.RTOMax, &c.RTO}} {
		if d.val <= 0 || d.val > d.max {
			return c, usageErr("--%s: %v is out of range (0, %v]", d.flag, d.val, d.max)
		}
		*d.dst = d.val
	}
	if c.RoundSize < 0 || c.RoundSize > sim.MaxSYNs {
		return c, usageErr("--round-size: %d is out of range 0..%d", c.RoundSize, sim.MaxSYNs)
	}
	if c.SynRetries < 1 || c.SynRetries > 20 {
		return c, usageErr("--syn-retries: %d is out of range 1..20", c.SynRetries)
	}
	if cmd.Flags().Changed("syn-linear-timeouts") {
		c.SynLinearTimeouts = &fl.synLinear // checked with each era by sim.Config.Validate
	}
	return c, nil
}

// rateConfig sets the rate and, from --duration, the connections.
func (fl *simFlags) rateConfig(cmd *cobra.Command, c *sim.Config) error {
	if fl.rate != "" {
		r, err := parseRate(fl.rate)
		if err != nil {
			return usageErr("--rate: %w", err)
		}
		c.Rate = r
	}
	// A rate sweep gives every scenario its rate.
	sweepsRate := strings.HasPrefix(fl.sweep, sim.ParamRate+"=")
	if (c.Workload == labnet.Steady || c.Workload == labnet.Short) && c.Rate == 0 && !sweepsRate {
		return usageErr("--rate: the %s workload needs a rate, e.g. --rate 5000/s", c.Workload)
	}
	switch {
	case fl.duration < 0:
		return usageErr("--duration: %v must not be negative", fl.duration)
	case fl.duration == 0:
		return nil
	case cmd.Flags().Changed("connections"):
		return usageErr("--duration: give --connections or --duration, not both (connections = rate x duration)")
	case c.Rate == 0 && !sweepsRate:
		return usageErr("--duration: needs --rate (connections = rate x duration)")
	}
	c.Duration = fl.duration
	if n, most := c.Rate*fl.duration.Seconds(), sim.MaxConnections(c.SynRetries); sim.ConnectionsFor(c.Rate, fl.duration) > most {
		return usageErr("--duration: %v at %v/s is %.4g connections, more than %d, the most with --syn-retries %d", fl.duration, c.Rate, n, most, c.SynRetries)
	}
	c.Connections = 0 // sim: rate x duration
	return nil
}

// onlyWith refuses a flag given with a workload that does not use it.
func onlyWith(cmd *cobra.Command, workload string) error {
	for _, f := range []struct {
		name      string
		workloads []string
	}{
		{"poisson", []string{labnet.Steady, labnet.Short}},
		{"server-timewait", []string{labnet.Short}},
		{"ts-offsets", []string{labnet.Short}},
	} {
		if cmd.Flags().Changed(f.name) && !slices.Contains(f.workloads, workload) {
			return usageErr("--%s: only with --workload %s", f.name, strings.Join(f.workloads, " or "))
		}
	}
	return nil
}

// protoConfig sets the protocol; the udp flags are usage errors with tcp.
func (fl *simFlags) protoConfig(cmd *cobra.Command, c *sim.Config) error {
	switch fl.proto {
	case sim.UDP:
		if c.UDPTimeout <= 0 || c.UDPTimeout > time.Minute {
			return usageErr("--udp-timeout: %v is out of range (0, 1m]", c.UDPTimeout)
		}
		if c.UDPAttempts < 1 || c.UDPAttempts > 5 {
			return usageErr("--udp-attempts: %d is out of range 1..5", c.UDPAttempts)
		}
		if fl.rate != "" {
			return usageErr("--rate: the udp workloads send bursts back to back")
		}
		if !slices.Contains(labnet.UDPWorkloads, fl.workload) {
			return usageErr("--workload: %s is not a UDP workload: want %s", fl.workload, strings.Join(labnet.UDPWorkloads, ", "))
		}
	case "tcp":
		for _, name := range []string{"udp-timeout", "udp-attempts", "service"} {
			if cmd.Flags().Changed(name) {
				return usageErr("--%s: only with --proto udp", name)
			}
		}
		c.UDPTimeout, c.UDPAttempts = 0, 0
		return nil
	default:
		return usageErr("--proto: %q is not tcp or udp", fl.proto)
	}
	c.Proto = fl.proto
	return nil
}

func parseEras(ss []string) ([]natmodel.Era, error) {
	if len(ss) == 0 {
		ss = []string{"6.5"}
	}
	var out []natmodel.Era
	for _, s := range ss {
		for _, p := range strings.Split(s, ",") {
			e, err := natmodel.ParseEra(p)
			if err != nil {
				return nil, usageErr("--era: %w", err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func parseModes(ss []string) ([]natrule.Mode, error) {
	if len(ss) == 0 {
		return natrule.DefaultModes(), nil
	}
	var out []natrule.Mode
	for _, s := range ss {
		m, err := natrule.ParseMode(s)
		if err != nil {
			return nil, usageErr("--nat: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// flagErr turns a sim.Config validation error into a usage error naming
// the flag.
func flagErr(err error) error {
	var fe *sim.FieldError
	if errors.As(err, &fe) {
		return usageErr("--%s: %w", fe.Field, fe.Err)
	}
	return usageErr("%w", err)
}

func runSim(cmd *cobra.Command, fl *simFlags) error {
	if err := fl.check(cmd); err != nil {
		return err
	}
	base, err := baseConfig(cmd, fl)
	if err != nil {
		return err
	}
	if fl.calibrate != "" || fl.predict != "" {
		return runCalibration(cmd, fl, base)
	}
	eras, err := parseEras(fl.eras)
	if err != nil {
		return err
	}
	modes, err := parseModes(fl.nats)
	if err != nil {
		return err
	}
	if fl.sweep != "" {
		return runSweep(cmd, fl, base, eras, modes)
	}
	var cfgs []sim.Config
	for _, e := range eras {
		for _, m := range modes {
			c := base
			c.Era, c.NAT = e, m
			if err := c.Validate(); err != nil {
				return flagErr(err)
			}
			cfgs = append(cfgs, c)
		}
	}
	res, err := sim.RunMany(cmd.Context(), cfgs, fl.workers)
	if err != nil {
		return envErr(err)
	}
	if fl.asJSON {
		return writeJSON(cmd.OutOrStdout(), struct {
			Results []sim.Result `json:"results"`
		}{res})
	}
	return sim.WriteResults(cmd.OutOrStdout(), cfgs[0], res)
}

// fromLabReport are the flags whose settings --calibrate and --predict
// take from the lab report instead.
var fromLabReport = []string{"era", "nat", "proto", "workload", "pods", "cpus", "servers", "connections", "rate", "poisson",
	"duration", "port-range", "round-size", "lifetime", "ct-timewait", "client-timewait", "syn-retries", "syn-linear-timeouts",
	"udp-timeout", "udp-attempts", "service", "sweep", "plot"}

// check reports flags that do not go together.
func (fl *simFlags) check(cmd *cobra.Command) error {
	if fl.calibrate != "" || fl.predict != "" {
		for _, name := range fromLabReport {
			if cmd.Flags().Changed(name) {
				return usageErr("--%s: --calibrate and --predict take the kernel, the modes and the scenario from the lab report; leave out --%s", name, name)
			}
		}
	}
	switch {
	case fl.calibrate != "" && fl.predict != "":
		return usageErr("--calibrate and --predict: give one (--predict fits the window itself, or reads --calibration)")
	case fl.calibration != "" && fl.predict == "":
		return usageErr("--calibration: only used with --predict")
	case fl.plot != "" && fl.sweep == "":
		return usageErr("--plot: needs --sweep")
	case fl.replicas < 1 || fl.replicas > 64:
		return usageErr("--replicas: %d is out of range 1..64", fl.replicas)
	case fl.workers < 0:
		return usageErr("--workers: %d must not be negative", fl.workers)
	}
	return nil
}

// runSweep runs --sweep across every era and mode and prints or plots it.
func runSweep(cmd *cobra.Command, fl *simFlags, base sim.Config, eras []natmodel.Era, modes []natrule.Mode) error {
	param, values, err := sim.ParseSweep(fl.sweep)
	if err != nil {
		return usageErr("--sweep: %w", err)
	}
	spec := sim.SweepSpec{Base: base, Param: param, Values: values, Eras: eras, Modes: modes, Workers: fl.workers}
	if _, err := spec.Scenarios(); err != nil {
		return flagErr(err)
	}
	if fl.plot != "" {
		if ext := strings.ToLower(fileExt(fl.plot)); ext != ".svg" && ext != ".png" {
			return usageErr("--plot: %q must end in .svg or .png", fl.plot)
		}
		// Before the sweep runs, not after.
		if st, err := os.Stat(filepath.Dir(fl.plot)); err != nil || !st.IsDir() {
			return usageErr("--plot: %s: no such directory", filepath.Dir(fl.plot))
		}
	}
	series, err := sim.RunSweep(cmd.Context(), spec)
	if err != nil {
		return envErr(err)
	}
	if fl.plot != "" {
		if err := sim.PlotSweep(fl.plot, param, series); err != nil {
			return envErr(err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "plot written to %s\n", fl.plot)
	}
	if fl.asJSON {
		return writeJSON(cmd.OutOrStdout(), struct {
			Param  string       `json:"param"`
			Values []float64    `json:"values"`
			Series []sim.Series `json:"series"`
		}{param, values, series})
	}
	return sim.WriteSweep(cmd.OutOrStdout(), param, values, series)
}

func fileExt(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 && !strings.ContainsRune(p[i:], '/') {
		return p[i:]
	}
	return ""
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func readLabFile(path, flag string) (sim.LabReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return sim.LabReport{}, usageErr("--%s: %w", flag, err)
	}
	defer f.Close()
	rep, err := sim.ReadLab(f)
	if err != nil {
		return sim.LabReport{}, usageErr("--%s: %s: %w", flag, path, err)
	}
	return rep, nil
}

func runCalibration(cmd *cobra.Command, fl *simFlags, base sim.Config) error {
	path, flag := fl.calibrate, "calibrate"
	if fl.predict != "" {
		path, flag = fl.predict, "predict"
	}
	rep, err := readLabFile(path, flag)
	if err != nil {
		return err
	}
	opt := sim.CalibrateOptions{Shape: base.Window, FitNAT: fl.fit, Replicas: fl.replicas, Base: base}
	if fl.fit != "" {
		m, err := natrule.ParseMode(fl.fit)
		if err != nil {
			return usageErr("--fit: %w", err)
		}
		opt.FitNAT = m.String()
	}
	cal, err := loadOrFit(cmd, fl, rep, opt, path, flag)
	if err != nil {
		return err
	}
	if fl.calibrate != "" {
		if fl.asJSON {
			return writeJSON(cmd.OutOrStdout(), cal)
		}
		return sim.WriteCalibration(cmd.OutOrStdout(), rep, cal)
	}
	preds, err := sim.Predict(cmd.Context(), rep, cal, opt)
	if err != nil {
		return usageErr("--predict: %s: %w", path, err)
	}
	if err := writePredictions(cmd.OutOrStdout(), fl.asJSON, rep, cal, preds); err != nil {
		return err
	}
	for _, p := range preds {
		if !p.Agree {
			return silentExit(exitFindings) // a prediction disagrees with its measurement
		}
	}
	return nil
}

// loadOrFit reads --calibration, or fits the window to the lab report.
func loadOrFit(cmd *cobra.Command, fl *simFlags, rep sim.LabReport, opt sim.CalibrateOptions, path, flag string) (sim.Calibration, error) {
	if fl.calibration == "" {
		cal, err := sim.Calibrate(cmd.Context(), rep, opt)
		if err != nil {
			return cal, usageErr("--%s: %s: %w", flag, path, err)
		}
		return cal, nil
	}
	f, err := os.Open(fl.calibration)
	if err != nil {
		return sim.Calibration{}, usageErr("--calibration: %w", err)
	}
	defer f.Close()
	cal, err := sim.ReadCalibration(f)
	if err != nil {
		return cal, usageErr("--calibration: %s: %w", fl.calibration, err)
	}
	return cal, nil
}

func writePredictions(out io.Writer, asJSON bool, rep sim.LabReport, cal sim.Calibration, preds []sim.Prediction) error {
	if !asJSON {
		return sim.WritePredictions(out, rep, cal, preds)
	}
	var a sim.Agreement
	a.Tally(preds)
	return writeJSON(out, struct {
		Kernel      string           `json:"kernel"`
		CPUs        int              `json:"cpus"`
		Workload    sim.LabWorkload  `json:"workload"`
		Calibration sim.Calibration  `json:"calibration"`
		Predictions []sim.Prediction `json:"predictions"`
		Agree       bool             `json:"agree"`
		Agreement   sim.Agreement    `json:"agreement"`
	}{rep.Kernel, rep.CPUs, rep.Workload, cal, preds, a.Agree == a.Results, a})
}
