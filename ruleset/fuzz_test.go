package ruleset

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedDumps adds every owner dump matching pattern to the fuzz corpus.
func seedDumps(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", "owners", pattern))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
}

// checkParse asserts the contract of every parser: an error is a
// *ParseError whose line lies inside the input; a success gives rules whose
// lines do too.
func checkParse(t *testing.T, in string, rs *Ruleset, err error) {
	lines := strings.Count(in, "\n") + 1
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *ParseError", err)
		}
		if pe.Line < 0 || pe.Line > lines {
			t.Fatalf("error line %d outside the input's %d lines: %v", pe.Line, lines, err)
		}
		return
	}
	for _, r := range rs.Rules {
		if r.Line < 1 || r.Line > lines {
			t.Fatalf("rule line %d outside the input's %d lines", r.Line, lines)
		}
		if r.Position < 1 {
			t.Fatalf("rule position %d", r.Position)
		}
		if r.NAT.PortMin > r.NAT.PortMax {
			t.Fatalf("reversed port range %d-%d", r.NAT.PortMin, r.NAT.PortMax)
		}
	}
}

func FuzzParseIptablesSave(f *testing.F) {
	seedDumps(f, "*.iptables-save")
	seedDumps(f, "*.S")
	f.Add("*nat\n:POSTROUTING ACCEPT [0:0]\n[1:2] -A POSTROUTING -m comment --comment \"a \\\"b\\\"\" -j SNAT --to-source [::1]:1-2 --random\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ParseIptablesSave(in, "fuzz")
		checkParse(t, in, rs, err)
	})
}

func FuzzParseNftText(f *testing.F) {
	seedDumps(f, "*.nft")
	f.Add("table inet t {\n\tchain c {\n\t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\t\tsnat ip to ip saddr map { 10.0.0.0/8 : 1.2.3.4 } # handle 3\n\t}\n}\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ParseNftText(in, "fuzz")
		checkParse(t, in, rs, err)
	})
}

func FuzzParseNftJSON(f *testing.F) {
	seedDumps(f, "*.nft.json")
	f.Add(`{"nftables": [{"chain": {"family": "ip", "table": "t", "name": "c"}}, {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"snat": {"addr": {"range": ["1.2.3.4", "1.2.3.9"]}, "port": {"range": [1, 2]}, "flags": ["random"]}}]}}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ParseNftJSON(in, "fuzz")
		checkParse(t, in, rs, err)
	})
}

func FuzzParse(f *testing.F) {
	seedDumps(f, "*")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := Parse(in, "fuzz", FormatAuto)
		checkParse(t, in, rs, err)
	})
}
