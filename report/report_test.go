package report

import (
	"bytes"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"
)

func TestCCDF(t *testing.T) {
	got := ccdf([]float64{3, 1, 2, 2, 0, -1})
	// Four valid values: 1, 2, 2, 3. Fraction slower than 1 is 3/4, than 2 is
	// 1/4, than 3 is 0, floored at 1/(2n) = 1/8.
	want := plotter.XYs{{X: 1, Y: 0.75}, {X: 2, Y: 0.25}, {X: 3, Y: 0.125}}
	if len(got) != len(want) {
		t.Fatalf("ccdf = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ccdf = %v, want %v", got, want)
		}
	}
	if ccdf(nil) != nil {
		t.Error("ccdf(nil) is not empty")
	}
}

func TestWriteHTML(t *testing.T) {
	svg, err := LatencyCCDF("latency", []Series{{Name: "masquerade (nft)", Values: []float64{0.02, 0.03, 1003}}, {Name: "empty"}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = WriteHTML(&b, Page{
		Title:   "lab <run>",
		Summary: "this kernel drops 3.4% of SYNs",
		Tables:  []Table{{Title: "Results", Rows: [][]string{{"nat", "clashes"}, {"masquerade", "708"}}}},
		Plots:   []HTMLFragment{svg},
		JSON:    map[string]int{"clashes": 708},
	})
	if err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"<title>lab &lt;run&gt;</title>", "this kernel drops 3.4% of SYNs", "<th>nat</th>", "<td>708</td>", "<svg", "masquerade (nft)", `&#34;clashes&#34;: 708`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<?xml") {
		t.Error("inline SVG keeps its XML prolog")
	}
	if strings.Contains(page, "http://") && !strings.Contains(page, "http://www.w3.org/") {
		t.Error("page refers to an outside resource")
	}
}
