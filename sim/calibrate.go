package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/snatrace/snatrace/internal/stats"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
)

// LabReport is the part of a `snatrace lab --json` document the simulator
// reads. Unknown fields are ignored.
type LabReport struct {
	Kernel   string      `json:"kernel"`
	CPUs     int         `json:"cpus"`
	Workload LabWorkload `json:"workload"`
	Results  []LabResult `json:"results"`
	// Proto is "udp" for a UDP run: its results are compared by their
	// clashes at confirm, resolved or not (labClashes).
	Proto string `json:"proto,omitempty"`
	// UDP describes a UDP run's client; Service is set when the queries went
	// to the DNAT service address.
	UDP *struct {
		Service string `json:"service"`
	} `json:"udp,omitempty"`
}

// LabWorkload is the lab's traffic description.
type LabWorkload struct {
	Name        string    `json:"name"`
	Pods        int       `json:"pods"`
	Servers     int       `json:"servers"`
	Bursts      int       `json:"bursts"`
	Connections int       `json:"connections"`
	PortRange   [2]uint16 `json:"port_range"`
	Rate        float64   `json:"rate"`
	Poisson     bool      `json:"poisson"`
	// TimeoutSeconds is the lab's --timeout (reports before it was
	// recorded used 8 s).
	TimeoutSeconds float64 `json:"timeout_seconds"`
}

// LabResult is one NAT mode's measured outcome.
type LabResult struct {
	NAT              string         `json:"nat"`
	Backend          string         `json:"backend"`
	Connections      int            `json:"connections"`
	Rounds           int            `json:"rounds"`
	Failed           int            `json:"failed"`
	Retransmitted    int            `json:"retransmitted"`
	RetransHistogram map[string]int `json:"retrans_histogram"`
	SynRetrans       *uint64        `json:"syn_retrans"`
	Conntrack        struct {
		InsertFailed uint64 `json:"insert_failed"`
		Drop         uint64 `json:"drop"`
		ClashResolve uint64 `json:"clash_resolve"`
	} `json:"conntrack"`
	ClashRate     float64    `json:"clash_rate"`
	ClashRateCI95 [2]float64 `json:"clash_rate_ci95"`
	// Datagrams is a UDP result's transmissions, retries included.
	Datagrams *uint64 `json:"datagrams,omitempty"`
}

// SYNs returns the SYNs the result's clients sent: connections plus
// retransmissions (from syn_retrans, else from the histogram).
func (r LabResult) SYNs() uint64 {
	if r.Datagrams != nil {
		return *r.Datagrams
	}
	n := uint64(r.Connections)
	if r.SynRetrans != nil {
		return n + *r.SynRetrans
	}
	for k, c := range r.RetransHistogram {
		if v, err := strconv.Atoi(k); err == nil && v > 0 && c > 0 {
			n += uint64(v) * uint64(c)
		}
	}
	return n
}

// ReadLab decodes a lab report and checks that the simulator can use it.
func ReadLab(r io.Reader) (LabReport, error) {
	var rep LabReport
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return LabReport{}, fmt.Errorf("decoding lab report: %w", err)
	}
	if len(rep.Results) == 0 {
		return LabReport{}, errors.New("lab report has no results")
	}
	if _, err := natmodel.ParseEra(rep.Kernel); err != nil {
		return LabReport{}, fmt.Errorf("lab report kernel: %w", err)
	}
	if rep.CPUs < 1 {
		return LabReport{}, fmt.Errorf("lab report cpus: %d", rep.CPUs)
	}
	for i, res := range rep.Results {
		if _, err := natrule.ParseMode(res.NAT); err != nil {
			return LabReport{}, fmt.Errorf("lab report result %d: nat: %w", i, err)
		}
		if res.Connections < 1 {
			return LabReport{}, fmt.Errorf("lab report result %d (%s): no connections", i, res.NAT)
		}
	}
	return rep, nil
}

// LabConfig returns the simulator configuration of one lab result: the lab's
// kernel, CPUs, workload and mode, with the window of base (and base's other
// timing settings).
func LabConfig(rep LabReport, res LabResult, base Config) (Config, error) {
	c := base
	era, err := natmodel.ParseEra(rep.Kernel)
	if err != nil {
		return c, err
	}
	m, err := natrule.ParseMode(res.NAT)
	if err != nil {
		return c, err
	}
	c.Era, c.NAT = era, m
	c.Proto = rep.Proto
	c.UDPService = rep.UDP != nil && rep.UDP.Service != ""
	c.Workload = rep.Workload.Name
	c.Pods = rep.Workload.Pods
	c.CPUs = rep.CPUs
	c.Servers = rep.Workload.Servers
	c.Connections = res.Connections
	if rep.Workload.PortRange != [2]uint16{} {
		c.PortRange = rep.Workload.PortRange
	}
	c.Rate, c.Poisson = rep.Workload.Rate, rep.Workload.Poisson
	// The lab sends rounds and waits for each to finish; it resets every
	// connection once it is up (SO_LINGER 0): the pods keep no TIME_WAIT
	// and the node's entry sits in CLOSE for 10 s.
	if res.Rounds > 0 {
		c.RoundSize = (res.Connections + res.Rounds - 1) / res.Rounds
	}
	c.Lifetime = Dist{Kind: Const, A: labLifetime}
	c.ClientTimeWait = 1
	c.CTTimeWait = labCloseTimeout
	if c.Proto != UDP {
		// The pods' tcp_syn_retries; the client gives up at its timeout,
		// having sent the SYNs that fit in it.
		c.SynRetries = 6
		c.ConnectTimeout = labConnectTimeout(rep.Workload.TimeoutSeconds)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Calibration is a race-window distribution fitted to a lab result.
type Calibration struct {
	// FitNAT, FitWorkload, FitPods and FitSYNs identify the lab result the
	// window was fitted on.
	FitNAT      string `json:"fit_nat"`
	FitWorkload string `json:"fit_workload"`
	FitPods     int    `json:"fit_pods"`
	FitSYNs     uint64 `json:"fit_syns"`
	// Shape is the window family scaled by the fit.
	Shape string `json:"shape"`
	// Window is the fitted window; WindowLo and WindowHi those that match
	// the ends of the lab's 95% interval ("" when unbounded).
	Window   string `json:"window"`
	WindowLo string `json:"window_lo"`
	WindowHi string `json:"window_hi"`
	// MeanUS are the windows' means in microseconds (Hi is +Inf, printed as
	// -1, when even the largest window does not reach the lab's upper bound).
	MeanUS   float64 `json:"window_mean_us"`
	MeanLoUS float64 `json:"window_mean_lo_us"`
	MeanHiUS float64 `json:"window_mean_hi_us"`
	// Measured is the lab's clash rate and interval.
	Measured     float64    `json:"measured_clash_rate"`
	MeasuredCI95 [2]float64 `json:"measured_clash_rate_ci95"`
	// Fitted is the simulator's clash rate at Window.
	Fitted   float64 `json:"fitted_clash_rate"`
	Replicas int     `json:"replicas"`
	Note     string  `json:"note,omitempty"`
	// Scale, ScaleLo and ScaleHi multiply Shape (ScaleHi -1: unbounded).
	Scale   float64 `json:"scale"`
	ScaleLo float64 `json:"scale_lo"`
	ScaleHi float64 `json:"scale_hi"`

	scale, lo, hi float64
	shape         Dist
}

// ReadCalibration decodes a Calibration printed with --calibrate --json.
// The scales are what is used; the window strings, when present, must be
// Shape scaled by them (empty ones are derived).
func ReadCalibration(r io.Reader) (Calibration, error) {
	var c Calibration
	if err := json.NewDecoder(r).Decode(&c); err != nil {
		return Calibration{}, fmt.Errorf("decoding calibration: %w", err)
	}
	shape, err := ParseDist(c.Shape)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibration shape: %w", err)
	}
	if !(c.Scale > 0) || !(c.ScaleLo > 0) || !(c.ScaleHi > 0 || c.ScaleHi == -1) {
		return Calibration{}, errors.New("calibration scales missing or not positive")
	}
	c.shape, c.scale, c.lo, c.hi = shape, c.Scale, c.ScaleLo, c.ScaleHi
	if c.hi == -1 {
		c.hi = math.Inf(1)
	}
	// The windows are derived from shape and scales; an edited window that
	// no longer matches would be silently ignored, so it is refused.
	given := [3]string{c.Window, c.WindowLo, c.WindowHi}
	c.fill()
	derived := [3]string{c.Window, c.WindowLo, c.WindowHi}
	for i, name := range []string{"window", "window_lo", "window_hi"} {
		if given[i] != "" && given[i] != derived[i] {
			return Calibration{}, fmt.Errorf("calibration %s %q does not match shape %s × scale (%s): edit the scales, the windows follow", name, given[i], c.Shape, derived[i])
		}
	}
	return c, nil
}

// CalibrateOptions tune the fit.
type CalibrateOptions struct {
	// Shape is the window family; its scale is fitted. Default DefaultWindow.
	Shape Dist
	// FitNAT picks the lab result to fit on; default the first result with
	// clashes.
	FitNAT string
	// Replicas is the number of seeds averaged per evaluation (default 4).
	Replicas int
	// Base carries the other timing settings (gap, skew...) and the seed.
	Base Config
}

// What the lab's connections do after the handshake.
const (
	labLifetime     = 20 * time.Microsecond
	labCloseTimeout = 10 * time.Second // nf_conntrack_tcp_timeout_close
	labTimeout      = 8 * time.Second  // lab.DefaultTimeout
)

// labConnectTimeout is the lab client's connect timeout of a report
// (timeout seconds; 0: the lab's default).
func labConnectTimeout(timeout float64) time.Duration {
	if timeout > 0 {
		return time.Duration(timeout * float64(time.Second))
	}
	return labTimeout
}

const (
	minScale = 1e-3
	maxScale = 1e4
)

// clashRate runs replicas of cfg with window shape×scale and pools them.
func clashRate(ctx context.Context, cfg Config, shape Dist, scale float64, replicas int) (rate float64, clashes, syns uint64, err error) {
	for i := 0; i < replicas; i++ {
		c := cfg
		c.Window = shape.Scale(scale)
		if c.Window == (Dist{}) {
			c.Window = Dist{Kind: Uniform} // zero window: never the default
		}
		c.Seed = ScenarioSeed(cfg.Seed, i)
		r, err := Run(ctx, c)
		if err != nil {
			return 0, 0, 0, err
		}
		clashes += r.confirmClashes()
		syns += r.SYNs
	}
	if syns == 0 {
		return 0, 0, 0, nil
	}
	return float64(clashes) / float64(syns), clashes, syns, nil
}

// grid holds the clash rate at each decade of scale: the rate grows with
// the window but not always monotonically at the top (very long windows
// desynchronise the CPUs), so the search brackets on this grid first.
type grid struct {
	scales, rates []float64
}

func scan(ctx context.Context, cfg Config, shape Dist, replicas int) (grid, error) {
	var g grid
	for s := minScale; s <= maxScale*1.0001; s *= 10 {
		f, _, _, err := clashRate(ctx, cfg, shape, s, replicas)
		if err != nil {
			return g, err
		}
		g.scales = append(g.scales, s)
		g.rates = append(g.rates, f)
	}
	return g, nil
}

func (g grid) ceiling() (rate, scale float64) {
	for i, f := range g.rates {
		if f > rate {
			rate, scale = f, g.scales[i]
		}
	}
	return rate, scale
}

// solve finds the smallest scale whose clash rate reaches target: the first
// grid decade that reaches it, then bisection in log space. It returns
// minScale when even the smallest window reaches it and +Inf when none does.
func solve(ctx context.Context, cfg Config, shape Dist, g grid, target float64, replicas int) (float64, error) {
	k := -1
	for i, f := range g.rates {
		if f >= target {
			k = i
			break
		}
	}
	switch k {
	case -1:
		return math.Inf(1), nil
	case 0:
		return g.scales[0], nil
	}
	lo, hi := math.Log(g.scales[k-1]), math.Log(g.scales[k])
	for i := 0; i < 16; i++ {
		mid := (lo + hi) / 2
		f, _, _, err := clashRate(ctx, cfg, shape, math.Exp(mid), replicas)
		if err != nil {
			return 0, err
		}
		if f < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return math.Exp((lo + hi) / 2), nil
}

// Calibrate fits the scale of the race-window distribution so that the
// simulated clash rate of one lab result matches the measured one, and the
// scales that match the ends of its 95% interval.
func Calibrate(ctx context.Context, rep LabReport, opt CalibrateOptions) (Calibration, error) {
	shape := opt.Shape
	if shape == (Dist{}) {
		shape = DefaultWindow
	}
	replicas := opt.Replicas
	if replicas <= 0 {
		replicas = 4
	}
	fit := -1
	for i, r := range rep.Results {
		if opt.FitNAT != "" {
			if r.NAT == opt.FitNAT {
				fit = i
				break
			}
			continue
		}
		if labClashes(rep, r) > 0 {
			fit = i
			break
		}
	}
	if fit < 0 {
		if opt.FitNAT != "" {
			return Calibration{}, fmt.Errorf("lab report has no result for nat %q", opt.FitNAT)
		}
		return Calibration{}, errors.New("lab report has no result with clashes: a window cannot be fitted to zero clashes")
	}
	res := rep.Results[fit]
	if labClashes(rep, res) == 0 {
		return Calibration{}, fmt.Errorf("lab result %q has no clashes: a window cannot be fitted to zero clashes (fit on a mode that clashes)", res.NAT)
	}
	cfg, err := LabConfig(rep, res, opt.Base)
	if err != nil {
		return Calibration{}, fmt.Errorf("lab result %q: %w", res.NAT, err)
	}
	syns := res.SYNs()
	measured := float64(labClashes(rep, res)) / float64(syns)
	lo, hi := stats.Wilson(labClashes(rep, res), syns)
	cal := Calibration{FitNAT: res.NAT, FitWorkload: rep.Workload.Name, FitPods: rep.Workload.Pods, FitSYNs: syns, Shape: shape.String(), Measured: measured, MeasuredCI95: [2]float64{lo, hi}, Replicas: replicas, shape: shape}
	// The clash rate grows with the window up to a ceiling (every race that
	// can happen does); a measured rate at or above the ceiling only bounds
	// the window from below.
	g, err := scan(ctx, cfg, shape, replicas)
	if err != nil {
		return Calibration{}, err
	}
	ceiling, _ := g.ceiling()
	target := measured
	if target > 0.98*ceiling {
		if lo > ceiling {
			return Calibration{}, fmt.Errorf("the measured clash rate of %q, %.4g (95%% CI %.4g-%.4g), is above anything the model gives (at most %.4g): the model cannot explain this lab result", res.NAT, measured, lo, hi, ceiling)
		}
		target = 0.98 * ceiling
		cal.Note = fmt.Sprintf("the measured rate is at the model's ceiling (%.4g): the window is bounded from below only", ceiling)
	}
	if cal.scale, err = solve(ctx, cfg, shape, g, target, replicas); err != nil {
		return Calibration{}, err
	}
	if cal.lo, err = solve(ctx, cfg, shape, g, math.Min(lo, target), replicas); err != nil {
		return Calibration{}, err
	}
	if hi >= ceiling {
		cal.hi = math.Inf(1)
	} else if cal.hi, err = solve(ctx, cfg, shape, g, hi, replicas); err != nil {
		return Calibration{}, err
	}
	if cal.Fitted, _, _, err = clashRate(ctx, cfg, shape, cal.scale, replicas); err != nil {
		return Calibration{}, err
	}
	cal.fill()
	return cal, nil
}

func (c *Calibration) fill() {
	c.Scale, c.ScaleLo, c.ScaleHi = c.scale, c.lo, c.hi
	if math.IsInf(c.hi, 1) {
		c.ScaleHi = -1
	}
	us := func(s float64) float64 { return math.Round(float64(c.shape.Scale(s).Mean())/1e3*1000) / 1000 }
	c.Window, c.MeanUS = c.shape.Scale(c.scale).String(), us(c.scale)
	c.WindowLo, c.MeanLoUS = c.shape.Scale(c.lo).String(), us(c.lo)
	if math.IsInf(c.hi, 1) {
		c.WindowHi, c.MeanHiUS = "", -1
		if c.Note == "" {
			c.Note = "the lab's upper bound is at the model's ceiling: the window is unbounded above"
		}
	} else {
		c.WindowHi, c.MeanHiUS = c.shape.Scale(c.hi).String(), us(c.hi)
	}
}

// WindowDist returns the fitted window distribution.
func (c Calibration) WindowDist() Dist { return c.shape.Scale(c.scale) }

// Prediction is the simulator's clash rate for one lab result next to the
// measured one.
type Prediction struct {
	NAT      string `json:"nat"`
	Backend  string `json:"backend,omitempty"`
	Workload string `json:"workload"`
	// Measured clash rate and its 95% interval (from the lab's counters).
	Measured     float64    `json:"measured"`
	MeasuredCI95 [2]float64 `json:"measured_ci95"`
	MeasuredDrop uint64     `json:"measured_insert_failed"`
	SYNs         uint64     `json:"syns"`
	// Predicted clash rate at the fitted window, and the interval spanning
	// the fitted window range and the simulation's own sampling error.
	Predicted     float64    `json:"predicted"`
	PredictedCI95 [2]float64 `json:"predicted_ci95"`
	// Agree is true when the two intervals overlap.
	Agree bool `json:"agree"`
	// Fit marks the result the window was fitted on.
	Fit bool `json:"fit"`
}

// Trivial reports whether p is no clash measured against no clash predicted:
// an agreement that says little about the model.
func (p Prediction) Trivial() bool { return p.MeasuredDrop == 0 && p.Predicted == 0 }

// Agreement counts how many predictions agree with their measurements: over
// all, and over the informative ones, which are neither the result the window
// was fitted on nor Trivial. The informative count is the one to quote.
type Agreement struct {
	Results          int `json:"results"`
	Agree            int `json:"agree"`
	Fitted           int `json:"fitted"`
	Trivial          int `json:"zero_against_zero"`
	Informative      int `json:"informative"`
	InformativeAgree int `json:"informative_agree"`
}

// Tally counts preds into a.
func (a *Agreement) Tally(preds []Prediction) {
	for _, p := range preds {
		a.Results++
		if p.Agree {
			a.Agree++
		}
		switch {
		case p.Fit:
			a.Fitted++
		case p.Trivial():
			a.Trivial++
		default:
			a.Informative++
			if p.Agree {
				a.InformativeAgree++
			}
		}
	}
}

// String says it in one line.
func (a Agreement) String() string {
	return fmt.Sprintf("%d of %d informative results agree (%d of %d in all; not counted: %d fitted, %d zero against zero)",
		a.InformativeAgree, a.Informative, a.Agree, a.Results, a.Fitted, a.Trivial)
}

// Predict runs the simulator, with the calibrated window, on every result of
// rep and compares.
func Predict(ctx context.Context, rep LabReport, cal Calibration, opt CalibrateOptions) ([]Prediction, error) {
	replicas := opt.Replicas
	if replicas <= 0 {
		replicas = 4
	}
	var out []Prediction
	for _, res := range rep.Results {
		cfg, err := LabConfig(rep, res, opt.Base)
		if err != nil {
			return nil, fmt.Errorf("lab result %q: %w", res.NAT, err)
		}
		syns := res.SYNs()
		p := Prediction{NAT: res.NAT, Backend: res.Backend, Workload: rep.Workload.Name, MeasuredDrop: labClashes(rep, res), SYNs: syns}
		p.Fit = res.NAT == cal.FitNAT && rep.Workload.Name == cal.FitWorkload && rep.Workload.Pods == cal.FitPods && syns == cal.FitSYNs
		p.Measured = float64(labClashes(rep, res)) / float64(syns)
		lo, hi := stats.Wilson(labClashes(rep, res), syns)
		p.MeasuredCI95 = [2]float64{lo, hi}
		// Predicted interval: over the window's own interval, each point
		// widened by the simulation's Wilson interval.
		scales := []float64{cal.lo, cal.scale}
		if !math.IsInf(cal.hi, 1) {
			scales = append(scales, cal.hi)
		} else {
			scales = append(scales, maxScale)
		}
		pl, ph := 1.0, 0.0
		for i, s := range scales {
			rate, k, n, err := clashRate(ctx, cfg, cal.shape, s, replicas)
			if err != nil {
				return nil, err
			}
			if i == 1 {
				p.Predicted = rate
			}
			l, h := stats.Wilson(k, n)
			pl, ph = math.Min(pl, l), math.Max(ph, h)
		}
		p.PredictedCI95 = [2]float64{pl, ph}
		p.Agree = pl <= p.MeasuredCI95[1] && p.MeasuredCI95[0] <= ph
		out = append(out, p)
	}
	return out, nil
}
