// Package report renders results for people: plots (gonum/plot) and a
// self-contained HTML page that embeds them, so a run can be mailed or
// attached to a ticket as one file with no network access needed to view it.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// HTMLFragment is trusted markup made by this package (an inline SVG plot).
type HTMLFragment = template.HTML

// Series is one named set of values, e.g. the connect latencies (ms) of one NAT mode.
type Series struct {
	Name   string
	Values []float64
}

// Table is a titled grid of cells; the first row is the header.
type Table struct {
	Title string
	Rows  [][]string
}

// Page is a self-contained HTML report.
type Page struct {
	Title   string
	Summary string // one paragraph, shown first (the verdict)
	Tables  []Table
	Plots   []HTMLFragment // inline SVG, e.g. from LatencyCCDF
	Notes   []string
	JSON    any // embedded, collapsed, for machines
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em} .summary{font-size:1.1em;background:#f3f6fa;padding:.8em 1em;border-left:4px solid #3b6ea5}
table{border-collapse:collapse;margin:1em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#eee} td:first-child,th:first-child{text-align:left} svg{max-width:100%;height:auto}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
</style></head><body>
<h1>{{.Title}}</h1>
<p class="summary">{{.Summary}}</p>
{{range .Tables}}<h2>{{.Title}}</h2><table>{{range $i, $r := .Rows}}<tr>{{range $r}}{{if eq $i 0}}<th>{{.}}</th>{{else}}<td>{{.}}</td>{{end}}{{end}}</tr>{{end}}</table>{{end}}
{{range .Plots}}<div>{{.}}</div>{{end}}
{{range .Notes}}<p>{{.}}</p>{{end}}
{{if .JSONText}}<details><summary>JSON</summary><pre>{{.JSONText}}</pre></details>{{end}}
</body></html>
`))

// WriteHTML renders p to w.
func WriteHTML(w io.Writer, p Page) error {
	var js string
	if p.JSON != nil {
		b, err := json.MarshalIndent(p.JSON, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding report JSON: %w", err)
		}
		js = string(b)
	}
	return pageTmpl.Execute(w, struct {
		Page
		JSONText string
	}{p, js})
}

// WriteHTMLFile renders p to path, replacing it only once complete.
func WriteHTMLFile(path string, p Page) error {
	var b bytes.Buffer
	if err := WriteHTML(&b, p); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

// LatencyCCDF plots, for each series, the fraction of connections slower than
// x (log-log): the 1 s, 3 s, 7 s steps of SYN retransmission stand out as
// plateaus. It returns inline SVG.
func LatencyCCDF(title string, series []Series) (template.HTML, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "connect latency (ms)"
	p.Y.Label.Text = "fraction of connections slower"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	// Bottom left is empty on a CCDF: every curve starts at 1 on the left.
	p.Legend.Left, p.Legend.Top = true, false
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(10)
	for i, s := range series {
		pts := ccdf(s.Values)
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return "", fmt.Errorf("plotting %s: %w", s.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	return svg(p, 9*vg.Inch, 4.5*vg.Inch)
}

// ccdf returns the steps of 1-F(x), floored at 1/(2n) so a log axis can show
// the last point.
func ccdf(v []float64) plotter.XYs {
	s := slices.Clone(v)
	s = slices.DeleteFunc(s, func(x float64) bool { return x <= 0 || math.IsNaN(x) })
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	n := float64(len(s))
	var pts plotter.XYs
	for i, x := range s {
		if i+1 < len(s) && s[i+1] == x {
			continue
		}
		pts = append(pts, plotter.XY{X: x, Y: math.Max((n-float64(i+1))/n, 1/(2*n))})
	}
	return pts
}

func svg(p *plot.Plot, w, h vg.Length) (template.HTML, error) {
	wt, err := p.WriterTo(w, h, "svg")
	if err != nil {
		return "", fmt.Errorf("rendering plot: %w", err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return "", fmt.Errorf("rendering plot: %w", err)
	}
	out := b.Bytes()
	if i := bytes.Index(out, []byte("<svg")); i > 0 {
		out = out[i:] // drop the XML prolog: the SVG is inline in HTML
	}
	return template.HTML(out), nil
}
