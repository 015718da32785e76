//go:build linux

package tsoffset

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
)

var record = flag.String("record", "", "write the probe's samples to this file (testdata for TestDetectRecorded)")

// TestProbe runs the behavioural probe on this kernel: it must reach a
// verdict from real SYNs and leave no namespace behind. Which verdict
// depends on the kernel; the test logs it (and checks it against the
// version where the version is known).
func TestProbe(t *testing.T) {
	testenv.NeedRoot(t, "creates a network namespace")
	d, err := Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", d.Kind, d.Reason)
	for _, s := range d.Samples {
		t.Logf("  %s -> %s at %s TSval %d", s.Src, s.Dst, s.At.Format("15:04:05.000000"), s.TSval)
	}
	if d.Kind != PerPort && d.Kind != PerAddress {
		t.Errorf("probe reached no verdict: %s (%s)", d.Kind, d.Reason)
	}
	if len(d.Samples) != len(ProbePorts) {
		t.Errorf("%d SYNs recorded, want %d", len(d.Samples), len(ProbePorts))
	}
	if left, _ := netns.List("snt-"); len(left) > 0 {
		for _, n := range left {
			if strings.HasSuffix(n, ProbeSuffix) {
				t.Errorf("probe namespace left behind: %s", n)
			}
		}
	}
	if *record != "" {
		b, _ := json.MarshalIndent(d.Samples, "", "  ")
		if err := os.WriteFile(*record, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
