package ruleset

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCorpus reads the public dumps in testdata/corpus — owners' docs, test
// fixtures and users' issue reports, each with its provenance (repository,
// path or issue, commit) and a "# want:" line — and checks what snatrace
// finds in each: source-NAT rules per owner, fully-random ones, and rules
// whose flags cannot be seen.
func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.*")
	if len(files) < 25 {
		t.Fatalf("%d corpus files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data := string(b)
			if !strings.Contains(data, "# provenance: ") || !strings.Contains(data, "# commit: ") {
				t.Error("no provenance or commit line")
			}
			want := headerValue(data, "want")
			if want == "" {
				t.Fatal("no # want: line")
			}
			rs, err := Parse(data, filepath.Base(f), FormatAuto)
			if err != nil {
				t.Fatal(err)
			}
			if got := corpusCounts(rs, want); got != want {
				t.Errorf("found %q, want %q:\n%s", got, want, summary(rs))
			}
		})
	}
}

// corpusCounts renders rs in the words of want: OWNER=N per owner, then
// the counters want names (fully-random, flags-unknown, rules).
func corpusCounts(rs *Ruleset, want string) string {
	owners := map[Owner]int{}
	fr, unknownFlags := 0, 0
	for _, r := range rs.Rules {
		owners[r.Owner]++
		if r.NAT.FullyRandom {
			fr++
		}
		if !r.FlagsKnown {
			unknownFlags++
		}
	}
	var parts []string
	for _, o := range Owners() {
		if owners[o] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", o, owners[o]))
		}
	}
	sort.SliceStable(parts, func(i, j int) bool {
		return strings.Index(want, strings.Split(parts[i], "=")[0]+"=") < strings.Index(want, strings.Split(parts[j], "=")[0]+"=")
	})
	for _, k := range []struct {
		name string
		n    int
	}{{"fully-random", fr}, {"flags-unknown", unknownFlags}, {"rules", len(rs.Rules)}} {
		if strings.Contains(want, k.name+"=") {
			parts = append(parts, fmt.Sprintf("%s=%d", k.name, k.n))
		}
	}
	return strings.Join(parts, " ")
}

func headerValue(data, key string) string {
	for _, l := range strings.Split(data, "\n") {
		if v, ok := strings.CutPrefix(l, "# "+key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
