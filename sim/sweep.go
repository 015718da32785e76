package sim

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
)

// Sweep parameters.
const (
	ParamPods     = "pods"
	ParamCPUs     = "cpus"
	ParamServers  = "servers"
	ParamRate     = "rate"      // steady connections/s
	ParamRange    = "range"     // width of the pods' ip_local_port_range, from its low end
	ParamNATRange = "nat-range" // width of the NAT port range (to :1024-...), every mode
	ParamWindow   = "window"    // mean race window, microseconds
)

// SweepParams lists the parameters a sweep can vary.
var SweepParams = []string{ParamPods, ParamCPUs, ParamServers, ParamRate, ParamRange, ParamNATRange, ParamWindow}

// maxSweepValues bounds the values of one sweep.
const maxSweepValues = 1000

// ParseSweep parses PARAM=VALUES where VALUES is a comma list (16,32,64), a
// geometric series (16:1024:x2) or an arithmetic one (10:100:+10).
func ParseSweep(s string) (param string, values []float64, err error) {
	param, spec, ok := strings.Cut(s, "=")
	param = strings.TrimSpace(strings.ToLower(param))
	if !ok || spec == "" {
		return "", nil, fmt.Errorf("want PARAM=VALUES, e.g. pods=16,32,64 or pods=16:1024:x2 (params: %s)", strings.Join(SweepParams, ", "))
	}
	known := false
	for _, p := range SweepParams {
		known = known || p == param
	}
	if !known {
		return "", nil, fmt.Errorf("unknown parameter %q: want one of %s", param, strings.Join(SweepParams, ", "))
	}
	num := func(x string) (float64, error) {
		v, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return 0, fmt.Errorf("bad value %q: want a positive number", x)
		}
		return v, nil
	}
	if parts := strings.Split(spec, ":"); len(parts) == 3 {
		lo, err := num(parts[0])
		if err != nil {
			return "", nil, err
		}
		hi, err := num(parts[1])
		if err != nil {
			return "", nil, err
		}
		if hi < lo {
			return "", nil, fmt.Errorf("range %v:%v is empty (start > end)", lo, hi)
		}
		step := strings.TrimSpace(parts[2])
		var next func(float64) float64
		switch {
		case strings.HasPrefix(step, "x") || strings.HasPrefix(step, "*"):
			f, err := num(step[1:])
			if err != nil || f <= 1 {
				return "", nil, fmt.Errorf("bad factor %q: want xF with F > 1", step)
			}
			next = func(v float64) float64 { return v * f }
		case strings.HasPrefix(step, "+"):
			d, err := num(step[1:])
			if err != nil {
				return "", nil, fmt.Errorf("bad step %q: want +D with D > 0", step)
			}
			next = func(v float64) float64 { return v + d }
		default:
			return "", nil, fmt.Errorf("bad step %q: want xF (geometric) or +D (arithmetic)", step)
		}
		for v := lo; v <= hi*(1+1e-9); v = next(v) {
			values = append(values, v)
			if len(values) > maxSweepValues {
				return "", nil, fmt.Errorf("more than %d values", maxSweepValues)
			}
		}
		return param, values, nil
	}
	for _, x := range strings.Split(spec, ",") {
		v, err := num(x)
		if err != nil {
			return "", nil, err
		}
		values = append(values, v)
		if len(values) > maxSweepValues {
			return "", nil, fmt.Errorf("more than %d values", maxSweepValues)
		}
	}
	return param, values, nil
}

// Apply returns base with param set to v.
func Apply(base Config, param string, v float64) (Config, error) {
	c := base
	n := int(math.Round(v))
	if param != ParamRate && param != ParamWindow && n < 1 {
		// Zero is "the default" in a Config: it must not come from a value.
		return c, fmt.Errorf("%s=%v rounds to %d: want at least 1", param, v, n)
	}
	switch param {
	case ParamPods:
		c.Pods = n
	case ParamCPUs:
		c.CPUs = n
	case ParamServers:
		c.Servers = n
	case ParamRate:
		c.Rate = v
	case ParamRange:
		lo := c.PortRange[0]
		if lo == 0 {
			lo = 32768
		}
		if n < 1 || int(lo)+n-1 > 65535 {
			return c, fmt.Errorf("range %d from port %d goes past 65535", n, lo)
		}
		c.PortRange = [2]uint16{lo, uint16(int(lo) + n - 1)}
	case ParamNATRange:
		if n < 1 || 1024+n-1 > 65535 {
			return c, fmt.Errorf("nat-range %d from port 1024 goes past 65535", n)
		}
		if c.NAT.Action != natrule.None {
			c.NAT.PortMin, c.NAT.PortMax = 1024, uint16(1024+n-1)
		}
	case ParamWindow:
		w := c.Window
		if w == (Dist{}) {
			w = DefaultWindow
		}
		mean := float64(w.Mean())
		if mean == 0 {
			w = Dist{Kind: Const, A: 1}
			mean = 1
		}
		c.Window = w.Scale(v * 1e3 / mean)
	default:
		return c, fmt.Errorf("unknown sweep parameter %q", param)
	}
	return c, nil
}

// Scenario is one point of a sweep: an era, a NAT mode and a value.
type Scenario struct {
	Era    natmodel.Era
	NAT    natrule.Mode
	Value  float64
	Config Config
}

// Point is a scenario's result.
type Point struct {
	Value  float64 `json:"value"`
	Result Result  `json:"result"`
}

// Series is one era and mode across the swept values.
type Series struct {
	Era    string  `json:"era"`
	NAT    string  `json:"nat"`
	Points []Point `json:"points"`
}

// SweepSpec is a sweep of one parameter across modes and eras.
type SweepSpec struct {
	Base   Config
	Param  string
	Values []float64
	Eras   []natmodel.Era
	Modes  []natrule.Mode
	// Workers bounds the goroutines; 0 means GOMAXPROCS.
	Workers int
}

// ScenarioSeed derives a scenario's seed from the base seed and the index of
// its value, so that every mode and era at one value sees the same traffic
// and the results do not depend on how scenarios are spread over cores.
func ScenarioSeed(base uint64, valueIndex int) uint64 {
	x := base ^ uint64(valueIndex+1)*0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Scenarios expands s into its scenarios, validated, in (era, mode, value)
// order.
func (s SweepSpec) Scenarios() ([]Scenario, error) {
	var out []Scenario
	for _, era := range s.Eras {
		for _, m := range s.Modes {
			for i, v := range s.Values {
				c := s.Base
				c.Era, c.NAT = era, m
				c, err := Apply(c, s.Param, v)
				if err != nil {
					return nil, &FieldError{Field: "sweep", Err: err}
				}
				c.Seed = ScenarioSeed(s.Base.Seed, i)
				if err := c.Validate(); err != nil {
					return nil, fmt.Errorf("%s=%v, era %v, nat %q: %w", s.Param, v, era, m, err)
				}
				out = append(out, Scenario{Era: era, NAT: m, Value: v, Config: c})
			}
		}
	}
	return out, nil
}

// RunMany runs configs on up to workers goroutines (0: GOMAXPROCS) and
// returns their results in order. Each config carries its own seed, so the
// results do not depend on the number of workers.
func RunMany(ctx context.Context, cfgs []Config, workers int) ([]Result, error) {
	res := make([]Result, len(cfgs))
	errs := make([]error, len(cfgs))
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(cfgs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res[i], errs[i] = Run(ctx, cfgs[i])
			}
		}()
	}
feed:
	for i := range cfgs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrCanceled, ctx.Err())
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// RunSweep runs every scenario of s on up to s.Workers goroutines. The
// result is the same whatever the number of workers.
func RunSweep(ctx context.Context, s SweepSpec) ([]Series, error) {
	scs, err := s.Scenarios()
	if err != nil {
		return nil, err
	}
	cfgs := make([]Config, len(scs))
	for i, sc := range scs {
		cfgs[i] = sc.Config
	}
	res, err := RunMany(ctx, cfgs, s.Workers)
	if err != nil {
		return nil, err
	}
	var series []Series
	for i, sc := range scs {
		if i%len(s.Values) == 0 {
			series = append(series, Series{Era: sc.Era.String(), NAT: sc.NAT.String()})
		}
		cur := &series[len(series)-1]
		cur.Points = append(cur.Points, Point{Value: sc.Value, Result: res[i]})
	}
	return series, nil
}
