package sim

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotSweep writes the clash rate against the swept parameter, one line per
// era and mode with its 95% interval as error bars, to file (.svg or .png).
func PlotSweep(file, param string, series []Series) error {
	ext := strings.ToLower(filepath.Ext(file))
	if ext != ".svg" && ext != ".png" {
		return fmt.Errorf("plot file %q: want a .svg or .png name", file)
	}
	p := plot.New()
	p.Title.Text = "SNAT clash rate by " + param
	p.X.Label.Text = paramLabel(param)
	p.Y.Label.Text = "clash rate (dropped SYNs / SYNs)"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	if len(series) > 0 && geometric(series[0].Points) {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	eras := map[string]bool{}
	for _, s := range series {
		eras[s.Era] = true
	}
	for i, s := range series {
		pts := make(plotter.XYs, len(s.Points))
		errs := make(plotter.YErrors, len(s.Points))
		for j, pt := range s.Points {
			r := pt.Result
			pts[j] = plotter.XY{X: pt.Value, Y: r.ClashRate}
			errs[j].Low = r.ClashRate - r.ClashRateCI95[0]
			errs[j].High = r.ClashRateCI95[1] - r.ClashRate
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plotting %s: %w", s.NAT, err)
		}
		c := palette[i%len(palette)]
		line.Color, points.Color = c, c
		points.Shape = draw.CircleGlyph{}
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYer
			plotter.YErrorer
		}{pts, errs})
		if err != nil {
			return fmt.Errorf("plotting %s: %w", s.NAT, err)
		}
		eb.Color = c
		p.Add(line, points, eb)
		name := s.NAT
		if len(eras) > 1 {
			name = s.Era + ": " + s.NAT
		}
		p.Legend.Add(name, line, points)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, file); err != nil {
		return fmt.Errorf("writing plot %s: %w", file, err)
	}
	return nil
}

var palette = []color.Color{
	color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
	color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff},
	color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
}

func paramLabel(p string) string {
	switch p {
	case ParamPods:
		return "pods"
	case ParamCPUs:
		return "CPUs"
	case ParamServers:
		return "servers"
	case ParamRate:
		return "connections per second"
	case ParamRange:
		return "ip_local_port_range width (ports)"
	case ParamNATRange:
		return "NAT port range width (ports)"
	case ParamWindow:
		return "mean race window (µs)"
	}
	return p
}

// geometric reports whether the swept values grow by a constant factor of
// at least 1.5 (pods=2:256:x2): such sweeps read better on a log axis.
func geometric(pts []Point) bool {
	if len(pts) < 3 {
		return false
	}
	r := pts[1].Value / pts[0].Value
	if r < 1.5 {
		return false
	}
	for i := 2; i < len(pts); i++ {
		if q := pts[i].Value / pts[i-1].Value; q < r*0.99 || q > r*1.01 {
			return false
		}
	}
	return true
}
