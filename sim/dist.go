package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// DistKind is the family of a Dist.
type DistKind uint8

// Distribution families.
const (
	Const     DistKind = iota // always A
	Uniform                   // uniform on [A, B]
	Exp                       // exponential with mean A
	LogNormal                 // log-normal with median A and shape (sigma) B
)

// Dist is a distribution of durations: a race window, a gap, a lifetime.
// The zero Dist is the constant 0.
type Dist struct {
	Kind DistKind
	A, B time.Duration // meaning depends on Kind
	// Sigma is the log-normal shape.
	Sigma float64
}

// ParseDist parses a duration distribution:
//
//	5us                constant
//	const:5us          constant
//	uniform:0-50us     uniform between the bounds (one unit at the end, or each bound with its own)
//	exp:20us           exponential with that mean
//	lognormal:10us,0.8 log-normal with that median and shape
func ParseDist(s string) (Dist, error) {
	in := s
	s = strings.TrimSpace(s)
	kind, arg, ok := strings.Cut(s, ":")
	if !ok {
		kind, arg = "const", s
	}
	bad := func(format string, a ...any) (Dist, error) {
		return Dist{}, fmt.Errorf("parsing distribution %q: %s", in, fmt.Sprintf(format, a...))
	}
	switch strings.ToLower(kind) {
	case "const":
		d, err := parseDur(arg)
		if err != nil {
			return bad("%v", err)
		}
		return Dist{Kind: Const, A: d}, nil
	case "exp":
		d, err := parseDur(arg)
		if err != nil {
			return bad("%v", err)
		}
		return Dist{Kind: Exp, A: d}, nil
	case "uniform":
		lo, hi, ok := strings.Cut(arg, "-")
		if !ok {
			return bad("want uniform:MIN-MAX, e.g. uniform:0-50us")
		}
		hiD, err := parseDur(hi)
		if err != nil {
			return bad("%v", err)
		}
		loD, err := parseDur(lo)
		if err != nil {
			// "0-50us": the low bound borrows the high bound's unit.
			unit := strings.TrimLeft(strings.TrimSpace(hi), "0123456789.")
			if loD, err = parseDur(lo + unit); err != nil {
				return bad("%v", err)
			}
		}
		if hiD < loD {
			return bad("min %v > max %v", loD, hiD)
		}
		return Dist{Kind: Uniform, A: loD, B: hiD}, nil
	case "lognormal":
		med, sig, ok := strings.Cut(arg, ",")
		if !ok {
			return bad("want lognormal:MEDIAN,SIGMA, e.g. lognormal:10us,0.8")
		}
		d, err := parseDur(med)
		if err != nil {
			return bad("%v", err)
		}
		sg, err := strconv.ParseFloat(strings.TrimSpace(sig), 64)
		if err != nil || sg < 0 || sg > 5 || math.IsNaN(sg) {
			return bad("shape %q is not a number in [0, 5]", sig)
		}
		return Dist{Kind: LogNormal, A: d, Sigma: sg}, nil
	}
	return bad("unknown family %q: want const, uniform, exp or lognormal", kind)
}

// maxDist bounds every duration parameter: a day is far beyond any window.
const maxDist = 24 * time.Hour

func parseDur(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.ReplaceAll(s, "µ", "u"))
	if err != nil {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	if d < 0 || d > maxDist {
		return 0, fmt.Errorf("duration %v out of range [0, 24h]", d)
	}
	return d, nil
}

// String returns the form ParseDist reads.
func (d Dist) String() string {
	switch d.Kind {
	case Uniform:
		return fmt.Sprintf("uniform:%v-%v", d.A, d.B)
	case Exp:
		return fmt.Sprintf("exp:%v", d.A)
	case LogNormal:
		return fmt.Sprintf("lognormal:%v,%g", d.A, d.Sigma)
	}
	return d.A.String()
}

// Mean returns the distribution's mean.
func (d Dist) Mean() time.Duration {
	switch d.Kind {
	case Uniform:
		return (d.A + d.B) / 2
	case LogNormal:
		return time.Duration(float64(d.A) * math.Exp(d.Sigma*d.Sigma/2))
	}
	return d.A
}

// Scale returns d with every time parameter multiplied by f (the shape is
// kept): calibration fits this factor.
func (d Dist) Scale(f float64) Dist {
	d.A = time.Duration(math.Round(float64(d.A) * f))
	d.B = time.Duration(math.Round(float64(d.B) * f))
	return d
}

// sample draws one value in nanoseconds.
func (d Dist) sample(r *rand.Rand) int64 {
	switch d.Kind {
	case Uniform:
		if d.B == d.A {
			return int64(d.A)
		}
		return int64(d.A) + r.Int64N(int64(d.B-d.A)+1)
	case Exp:
		return int64(r.ExpFloat64() * float64(d.A))
	case LogNormal:
		return int64(float64(d.A) * math.Exp(d.Sigma*r.NormFloat64()))
	}
	return int64(d.A)
}
