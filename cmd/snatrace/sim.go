package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/sim"
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
	cfg                                  sim.Config
	duration, ctTimeWait, clientTimeWait time.Duration
	rto                                  time.Duration
}

func newSimCmd() *cobra.Command {
	var fl simFlags
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Predict the SNAT race for other kernels, NAT modes and loads (no root)",
		Long: `snatrace sim simulates a NAT node: CPUs that each run one packet's
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
(--rate connections per second). In a burst every pod connects once; pods go
round-robin to one client thread per CPU, which connects for them one after
another. Steady connection i runs on CPU i mod C.

Distributions (--window, --gap, --skew, --lifetime, --pre-nat):
  5us | const:5us | uniform:0-50us | exp:20us | lognormal:10us,0.8

Sweeps vary one parameter across every --nat and --era, on all cores:
  --sweep pods=16,64,256 | cpus=2:64:x2 | rate=1000:10000:+1000 |
          range=100:28232:x4 | nat-range=64:4096:x2 | window=1:100:x10 (µs)`,
		Example: `  snatrace sim --era 5.0 --nat masquerade --workload ephemeral --pods 64 --cpus 16 --rate 5000/s --duration 60s --seed 1
  snatrace sim --era legacy --era 6.5 --nat masquerade --nat "masquerade random" --nat "masquerade fully-random"
  snatrace sim --workload same-port --sweep pods=2:256:x2 --nat masquerade --nat "masquerade fully-random" --plot pods.svg
  snatrace sim --calibrate lab.json --json > calib.json
  snatrace sim --predict lab.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd, &fl)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&fl.eras, "era", nil, "kernel era: legacy, 5.0, 6.5 or a version such as 4.19 or 6.18; repeat or comma-separate to compare (default 6.5)")
	f.StringArrayVar(&fl.nats, "nat", nil, "NAT mode, nft syntax; repeat to compare (default: masquerade, masquerade fully-random)")
	f.StringVar(&fl.workload, "workload", labnet.SamePort, "traffic: same-port, ephemeral or steady")
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
	f.IntVar(&fl.cfg.RoundSize, "round-size", 0, "send rounds of N connections, each waiting for the last to finish, as the lab does (0: one stream)")
	f.DurationVar(&fl.rto, "rto", time.Second, "initial SYN retransmission timeout")
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
	// Zero means "default" in sim.Config; on the command line it is an error.
	for _, n := range []struct {
		flag   string
		v, max int
	}{{"pods", c.Pods, sim.MaxPods}, {"cpus", c.CPUs, sim.MaxCPUs}, {"servers", c.Servers, 250}, {"connections", c.Connections, sim.MaxSYNs}} {
		if n.v < 1 || n.v > n.max {
			return c, usageErr("--%s: %d is out of range 1..%d", n.flag, n.v, n.max)
		}
	}
	if fl.rate != "" {
		r, err := parseRate(fl.rate)
		if err != nil {
			return c, usageErr("--rate: %v", err)
		}
		c.Rate = r
	}
	if c.Workload == labnet.Steady && c.Rate == 0 {
		return c, usageErr("--rate: the steady workload needs a rate, e.g. --rate 5000/s")
	}
	if fl.duration < 0 {
		return c, usageErr("--duration: %v must not be negative", fl.duration)
	}
	if fl.duration > 0 {
		if c.Rate == 0 {
			return c, usageErr("--duration: needs --rate (connections = rate x duration)")
		}
		if !cmd.Flags().Changed("connections") {
			n := c.Rate * fl.duration.Seconds()
			if n > sim.MaxSYNs {
				return c, usageErr("--duration: %v at %v/s is %.3g connections, more than the limit of %d", fl.duration, c.Rate, n, sim.MaxSYNs)
			}
			c.Connections = max(1, int(n))
		}
	}
	lo, hi, err := parsePortRange(fl.portRange)
	if err != nil {
		return c, usageErr("--port-range: %v", err)
	}
	c.PortRange = [2]uint16{lo, hi}
	c.Chooser = sim.Chooser(fl.chooser)
	for _, d := range []struct {
		flag, val string
		dst       *sim.Dist
	}{{"window", fl.window, &c.Window}, {"gap", fl.gap, &c.Gap}, {"skew", fl.skew, &c.Skew}, {"lifetime", fl.lifetime, &c.Lifetime}, {"pre-nat", fl.preNAT, &c.PreNAT}} {
		v, err := sim.ParseDist(d.val)
		if err != nil {
			return c, usageErr("--%s: %v", d.flag, err)
		}
		if v == (sim.Dist{}) {
			v = sim.Dist{Kind: sim.Uniform} // an explicit zero, not "default"
		}
		*d.dst = v
	}
	for _, d := range []struct {
		flag string
		val  time.Duration
		dst  *time.Duration
	}{{"ct-timewait", fl.ctTimeWait, &c.CTTimeWait}, {"client-timewait", fl.clientTimeWait, &c.ClientTimeWait}, {"rto", fl.rto, &c.RTO}} {
		if d.val <= 0 || d.val > 24*time.Hour {
			return c, usageErr("--%s: %v is out of range (0, 24h]", d.flag, d.val)
		}
		*d.dst = d.val
	}
	if c.RoundSize < 0 || c.RoundSize > sim.MaxSYNs {
		return c, usageErr("--round-size: %d is out of range 0..%d", c.RoundSize, sim.MaxSYNs)
	}
	if c.SynRetries < 1 || c.SynRetries > 20 {
		return c, usageErr("--syn-retries: %d is out of range 1..20", c.SynRetries)
	}
	return c, nil
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
				return nil, usageErr("--era: %v", err)
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
			return nil, usageErr("--nat: %v", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// flagErr maps a sim.Config validation error ("pods: ...") to a usage error
// naming the flag.
func flagErr(err error) error {
	msg := err.Error()
	if name, _, ok := strings.Cut(msg, ":"); ok && !strings.Contains(name, " ") {
		return usageErr("--%s", msg)
	}
	return usageErr("%s", msg)
}

func runSim(cmd *cobra.Command, fl *simFlags) error {
	if err := fl.check(); err != nil {
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
	printSim(cmd.OutOrStdout(), cfgs[0], res)
	return nil
}

// check reports flags that do not go together.
func (fl *simFlags) check() error {
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
		return usageErr("--sweep: %v", err)
	}
	spec := sim.SweepSpec{Base: base, Param: param, Values: values, Eras: eras, Modes: modes, Workers: fl.workers}
	if _, err := spec.Scenarios(); err != nil {
		return flagErr(err)
	}
	if fl.plot != "" {
		if ext := strings.ToLower(fileExt(fl.plot)); ext != ".svg" && ext != ".png" {
			return usageErr("--plot: %q must end in .svg or .png", fl.plot)
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
	printSweep(cmd.OutOrStdout(), param, values, series)
	return nil
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

func pct(x float64) string { return strconv.FormatFloat(100*x, 'g', 3, 64) + "%" }

func printSim(w io.Writer, c sim.Config, res []sim.Result) {
	fmt.Fprintf(w, "workload %s: %d pods, %d CPUs, %d server(s), window %v, seed %d\n\n",
		c.Workload, c.Pods, c.CPUs, c.Servers, c.Window, c.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "era\tnat\tconnections\tSYNs\tclashes\tclash rate (95% CI)\t+1s\t+3s\t+7s…\tfailed\tp99 ms\t")
	for _, r := range res {
		var later int
		for k, n := range r.Delayed {
			if v, _ := strconv.Atoi(k); v >= 3 {
				later += n
			}
		}
		later -= r.Failed
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s (%s-%s)\t%d\t%d\t%d\t%d\t%.1f\t\n", r.Era, r.NAT, r.Connections, r.SYNs, r.Clashes,
			pct(r.ClashRate), pct(r.ClashRateCI95[0]), pct(r.ClashRateCI95[1]), r.Delayed["1"], r.Delayed["2"], later, r.Failed, r.LatencyMS.P99)
	}
	tw.Flush()
	for _, r := range res {
		if n := r.Steps["exhausted"]; n > 0 {
			fmt.Fprintf(w, "\nnote: %s %s: %d NAT choices found no free port (port exhaustion, not the race: add addresses, destinations or a shorter TIME_WAIT; 6.5+ evicts closing entries, %d here)\n",
				r.Era, r.NAT, n, r.Conntrack.Evicted)
		}
	}
}

func printSweep(w io.Writer, param string, values []float64, series []sim.Series) {
	fmt.Fprintf(w, "clash rate by %s (dropped SYNs / SYNs)\n\n", param)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, param+"\t")
	eras := map[string]bool{}
	for _, s := range series {
		eras[s.Era] = true
	}
	for _, s := range series {
		name := s.NAT
		if len(eras) > 1 {
			name = s.Era + " " + name
		}
		fmt.Fprint(tw, name+"\t")
	}
	fmt.Fprintln(tw)
	for i, v := range values {
		fmt.Fprintf(tw, "%g\t", v)
		for _, s := range series {
			r := s.Points[i].Result
			fmt.Fprintf(tw, "%s (%d)\t", pct(r.ClashRate), r.Clashes)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func readLabFile(path, flag string) (sim.LabReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return sim.LabReport{}, usageErr("--%s: %v", flag, err)
	}
	defer f.Close()
	rep, err := sim.ReadLab(f)
	if err != nil {
		return sim.LabReport{}, usageErr("--%s: %s: %v", flag, path, err)
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
			return usageErr("--fit: %v", err)
		}
		opt.FitNAT = m.String()
	}
	cal, err := loadOrFit(cmd, fl, rep, opt, path, flag)
	if err != nil {
		return err
	}
	if fl.calibrate != "" {
		return printCalibration(cmd.OutOrStdout(), fl.asJSON, rep, cal)
	}
	preds, err := sim.Predict(cmd.Context(), rep, cal, opt)
	if err != nil {
		return usageErr("--predict: %s: %v", path, err)
	}
	if err := printPredictions(cmd.OutOrStdout(), fl.asJSON, rep, cal, preds); err != nil {
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
			return cal, usageErr("--%s: %s: %v", flag, path, err)
		}
		return cal, nil
	}
	f, err := os.Open(fl.calibration)
	if err != nil {
		return sim.Calibration{}, usageErr("--calibration: %v", err)
	}
	defer f.Close()
	cal, err := sim.ReadCalibration(f)
	if err != nil {
		return cal, usageErr("--calibration: %s: %v", fl.calibration, err)
	}
	return cal, nil
}

func printCalibration(out io.Writer, asJSON bool, rep sim.LabReport, cal sim.Calibration) error {
	if asJSON {
		return writeJSON(out, cal)
	}
	fmt.Fprintf(out, "fitted on %q (kernel %s, %d CPUs, %s, %d pods)\n", cal.FitNAT, rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods)
	fmt.Fprintf(out, "measured clash rate %s (95%% CI %s-%s), simulated at the fit %s\n", pct(cal.Measured), pct(cal.MeasuredCI95[0]), pct(cal.MeasuredCI95[1]), pct(cal.Fitted))
	hi := cal.WindowHi
	if hi == "" {
		hi = "unbounded"
	}
	fmt.Fprintf(out, "race window %s (mean %.3g µs); 95%% range %s .. %s\n", cal.Window, cal.MeanUS, cal.WindowLo, hi)
	if cal.Note != "" {
		fmt.Fprintf(out, "note: %s\n", cal.Note)
	}
	return nil
}

func printPredictions(out io.Writer, asJSON bool, rep sim.LabReport, cal sim.Calibration, preds []sim.Prediction) error {
	agree := true
	for _, p := range preds {
		agree = agree && p.Agree
	}
	if asJSON {
		return writeJSON(out, struct {
			Kernel      string           `json:"kernel"`
			CPUs        int              `json:"cpus"`
			Workload    sim.LabWorkload  `json:"workload"`
			Calibration sim.Calibration  `json:"calibration"`
			Predictions []sim.Prediction `json:"predictions"`
			Agree       bool             `json:"agree"`
		}{rep.Kernel, rep.CPUs, rep.Workload, cal, preds, agree})
	}
	fmt.Fprintf(out, "kernel %s, %d CPUs, workload %s, %d pods; window fitted on %q: %s (mean %.3g µs)\n\n",
		rep.Kernel, rep.CPUs, rep.Workload.Name, rep.Workload.Pods, cal.FitNAT, cal.Window, cal.MeanUS)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nat\tSYNs\tmeasured (95% CI)\tpredicted (95% range)\tagree\t")
	for _, p := range preds {
		mark := "yes"
		if !p.Agree {
			mark = "NO"
		}
		if p.Fit {
			mark += " (fit)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s (%s-%s)\t%s (%s-%s)\t%s\t\n", p.NAT, p.SYNs, pct(p.Measured), pct(p.MeasuredCI95[0]), pct(p.MeasuredCI95[1]),
			pct(p.Predicted), pct(p.PredictedCI95[0]), pct(p.PredictedCI95[1]), mark)
	}
	return tw.Flush()
}
