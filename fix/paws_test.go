package fix

import (
	"bytes"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tsoffset"
)

func TestPlanPAWSNote(t *testing.T) {
	rs := readDump(t, "docker-legacy.save")
	for _, tc := range []struct {
		kind tsoffset.Kind
		want string // in the text plan; "" for no note
	}{
		{tsoffset.PerPort, "depend on the ports"},
		{tsoffset.Unknown, "is not known"},
		{tsoffset.PerAddress, ""},
		{tsoffset.NoTimestamps, ""},
	} {
		p := MakePlan(rs, Options{TSOffsets: func() *tsoffset.Detection { return &tsoffset.Detection{Kind: tc.kind, Reason: "test"} }})
		var b bytes.Buffer
		if err := WritePlan(&b, p, false); err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			if p.PAWS != nil || strings.Contains(b.String(), "Not fixes") {
				t.Errorf("%s: a PAWS note: %+v", tc.kind, p.PAWS)
			}
			continue
		}
		if p.PAWS == nil || !strings.Contains(p.PAWS.Message, tc.want) {
			t.Fatalf("%s: note %+v, want one saying %q", tc.kind, p.PAWS, tc.want)
		}
		for _, s := range []string{"--exclude owner=NAME", "tcp_tw_reuse", "tcp_timestamps=0", "Not fixes:", "Alternatives:"} {
			if !strings.Contains(b.String(), s) {
				t.Errorf("%s: the plan does not say %q:\n%s", tc.kind, s, b.String())
			}
		}
	}
	if p := MakePlan(&ruleset.Ruleset{}, Options{TSOffsets: func() *tsoffset.Detection { t.Fatal("asked for the offsets of a plan without changes"); return nil }}); p.PAWS != nil {
		t.Error("a note on a plan that changes nothing")
	}
}
