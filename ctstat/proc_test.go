package ctstat

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/snatrace/snatrace/internal/golden"
)

// TestParseProcGolden parses a recorded file of each header era and compares
// the snapshot with testdata/<name>.golden.json.
func TestParseProcGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/proc-*.txt")
	if err != nil || len(files) != 3 {
		t.Fatalf("want 3 recorded proc files, got %v (%v)", files, err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			s, err := ReadProc(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".txt") + ".golden.json"
			goldenfile.Check(t, golden, got)
		})
	}
}

// TestParseProcEras checks by hand the columns that moved between eras: the
// golden files alone would accept whatever the parser produced when recorded.
func TestParseProcEras(t *testing.T) {
	tests := []struct {
		file    string
		entries uint64
		cpus    int
		total   Counters
	}{
		{
			// 4.19: searched and delete_list are not kept.
			file: "proc-4.19.txt", entries: 0x2a, cpus: 4,
			total: Counters{
				Found: 0xa0a, Invalid: 0x22, Ignore: 0xa0e12, InsertFailed: 0x63,
				Drop: 0x66, EarlyDrop: 1, Error: 2, SearchRestart: 12,
			},
		},
		{
			// 5.10-5.14: clashres in place of searched, delete_list still there.
			file: "proc-5.10.txt", entries: 0x100, cpus: 2,
			total: Counters{Found: 0x15, Invalid: 1, InsertFailed: 2, Drop: 3, SearchRestart: 1, ClashResolve: 11},
		},
		{
			// 5.15+: chainlength in place of delete_list.
			file: "proc-6.18.txt", entries: 3, cpus: 2,
			total: Counters{
				Found: 0x30, Invalid: 4, InsertFailed: 19, Drop: 19, Error: 1,
				SearchRestart: 2, ClashResolve: 2, ChainTooLong: 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s, err := ReadProc(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if s.Source != SourceProc || s.Entries != tt.entries || len(s.CPUs) != tt.cpus {
				t.Errorf("source %q entries %d cpus %d, want proc %d %d", s.Source, s.Entries, len(s.CPUs), tt.entries, tt.cpus)
			}
			for i, c := range s.CPUs {
				if c.CPU != i {
					t.Errorf("line %d has CPU %d", i, c.CPU)
				}
			}
			if got := s.Total(); got != tt.total {
				t.Errorf("total\n got %+v\nwant %+v", got, tt.total)
			}
		})
	}
}

func TestParseProcErrors(t *testing.T) {
	const hdr = "entries found insert_failed drop\n"
	tests := []struct {
		name, in, err string
	}{
		{"empty", "", "empty input: no header"},
		{"header only", hdr, "no CPU lines after the header"},
		{"no entries column", "found drop\n00000001 00000002\n", "line 1: header has no entries column: not a conntrack statistics file"},
		{"bad column name", "entries Found\n0 0\n", `line 1: header column 2 "Found": not a column name`},
		{"hex header", "00000001 00000002\n", `line 1: header has no entries column: not a conntrack statistics file`},
		{"duplicate column", "entries drop drop\n0 0 0\n", `line 1: header column 3 "drop": duplicate`},
		{"short line", hdr + "00000001 00000002 00000003\n", "line 2: 3 fields, header has 4"},
		{"long line", hdr + "1 2 3 4\n1 2 3 4 5\n", "line 3: 5 fields, header has 4"},
		{"empty line", hdr + "1 2 3 4\n\n", "line 3: empty line"},
		{"not hex", hdr + "1 2 3 4\n1 2 zz 4\n", `line 3: column "insert_failed": strconv.ParseUint: parsing "zz": invalid syntax`},
		{"negative", hdr + "1 -2 3 4\n", `line 2: column "found": strconv.ParseUint: parsing "-2": invalid syntax`},
		{"overflow", hdr + "1 2 3 10000000000000000\n", `line 2: column "drop": strconv.ParseUint: parsing "10000000000000000": value out of range`},
		{"line too long", hdr + strings.Repeat("0", maxLineLen+1) + "\n", "reading line 2: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProc(strings.NewReader(tt.in))
			if err == nil || err.Error() != tt.err {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
}

func TestParseProcUnknownColumnsIgnored(t *testing.T) {
	in := "entries future_counter drop\n00000005 000000ff 00000001\n00000006 000000ff 00000002\n"
	s, err := ParseProc(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Counters{Drop: 3}
	if s.Entries != 5 || s.Total() != want || len(s.Columns) != 3 {
		t.Errorf("got entries %d total %+v columns %v", s.Entries, s.Total(), s.Columns)
	}
}

func TestReadProcMissing(t *testing.T) {
	_, err := ReadProc(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("error %v, want not-exist", err)
	}
	if !strings.HasPrefix(err.Error(), "reading conntrack statistics: ") {
		t.Errorf("error %q lacks context", err)
	}
}

func TestReadMax(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("262144\n"), 0o644)
	os.WriteFile(bad, []byte("lots\n"), 0o644)
	if v, err := ReadMax(good); err != nil || v != 262144 {
		t.Errorf("ReadMax(good) = %d, %v", v, err)
	}
	_, err := ReadMax(bad)
	want := "parsing " + bad + `: strconv.ParseUint: parsing "lots": invalid syntax`
	if err == nil || err.Error() != want {
		t.Errorf("ReadMax(bad) error %v, want %q", err, want)
	}
}

func FuzzParseProc(f *testing.F) {
	files, _ := filepath.Glob("testdata/proc-*.txt")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("entries drop\n1 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseProc(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(s.CPUs) == 0 || s.Source != SourceProc {
			t.Fatalf("accepted input gave %+v", s)
		}
		for i, c := range s.CPUs {
			if c.CPU != i {
				t.Fatalf("line %d gave CPU %d", i, c.CPU)
			}
		}
	})
}
