package ctstat

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ProcPath is the conntrack statistics file of the calling thread's network
// namespace. /proc/net would be the namespace of the process's main thread,
// which is wrong for a goroutine that entered another namespace on a locked
// OS thread.
const ProcPath = "/proc/thread-self/net/stat/nf_conntrack"

// MaxPath is nf_conntrack_max of the opener's network namespace.
const MaxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// column returns where the value of the /proc column name goes, or nil for a
// column ctstat does not keep (searched, new, delete, delete_list, expect_*,
// and any column a future kernel adds).
func column(c *Counters, name string) *uint64 {
	switch name {
	case "found":
		return &c.Found
	case "invalid":
		return &c.Invalid
	case "ignore":
		return &c.Ignore
	case "insert":
		return &c.Insert
	case "insert_failed":
		return &c.InsertFailed
	case "drop":
		return &c.Drop
	case "early_drop":
		return &c.EarlyDrop
	case "icmp_error":
		return &c.Error
	case "search_restart":
		return &c.SearchRestart
	case "clashres": // 5.10+, in place of searched
		return &c.ClashResolve
	case "chainlength": // 5.15+, in place of delete_list
		return &c.ChainTooLong
	}
	return nil
}

// maxLineLen bounds one line of the file: 17 columns of 8 hex digits take
// about 160 bytes.
const maxLineLen = 4096

// ParseProc parses the contents of /proc/net/stat/nf_conntrack: a header of
// column names, then one line per possible CPU with every field in hex. Columns
// are found by name, so every header era parses (searched/clashres,
// delete_list/chainlength); unknown columns are ignored. The CPU number is the
// line index. The header must name the entries column, every line must have as
// many fields as the header, and there must be at least one CPU line; errors
// name the line (1 is the header) and the column.
func ParseProc(r io.Reader) (Snapshot, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLineLen)
	s := Snapshot{Source: SourceProc}
	entriesCol := -1
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if line == 1 {
			cols, idx, err := parseHeader(fields)
			if err != nil {
				return Snapshot{}, fmt.Errorf("line 1: %w", err)
			}
			s.Columns, entriesCol = cols, idx
			continue
		}
		if len(fields) == 0 && line > 1 {
			return Snapshot{}, fmt.Errorf("line %d: empty line", line)
		}
		if len(fields) != len(s.Columns) {
			return Snapshot{}, fmt.Errorf("line %d: %d fields, header has %d", line, len(fields), len(s.Columns))
		}
		cpu := CPU{CPU: line - 2}
		for i, f := range fields {
			v, err := strconv.ParseUint(f, 16, 64)
			if err != nil {
				return Snapshot{}, fmt.Errorf("line %d: column %q: %w", line, s.Columns[i], err)
			}
			if i == entriesCol {
				if line == 2 {
					s.Entries = v
				}
				continue
			}
			if p := column(&cpu.Counters, s.Columns[i]); p != nil {
				*p = v
			}
		}
		s.CPUs = append(s.CPUs, cpu)
	}
	if err := sc.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("reading line %d: %w", line+1, err)
	}
	if line == 0 {
		return Snapshot{}, errors.New("empty input: no header")
	}
	if len(s.CPUs) == 0 {
		return Snapshot{}, errors.New("no CPU lines after the header")
	}
	return s, nil
}

// parseHeader checks the header names and returns them with the index of the
// entries column.
func parseHeader(fields []string) ([]string, int, error) {
	entries := -1
	seen := make(map[string]bool, len(fields))
	for i, f := range fields {
		for _, r := range f {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
				return nil, 0, fmt.Errorf("header column %d %q: not a column name", i+1, f)
			}
		}
		if seen[f] {
			return nil, 0, fmt.Errorf("header column %d %q: duplicate", i+1, f)
		}
		seen[f] = true
		if f == "entries" {
			entries = i
		}
	}
	if entries < 0 {
		return nil, 0, errors.New("header has no entries column: not a conntrack statistics file")
	}
	return fields, entries, nil
}

// ReadProc reads and parses the statistics file at path, normally ProcPath.
func ReadProc(path string) (Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading conntrack statistics: %w", err)
	}
	defer f.Close()
	s, err := ParseProc(f)
	if err != nil {
		return Snapshot{}, fmt.Errorf("parsing %s: %w", path, err)
	}
	return s, nil
}

// ReadMax reads nf_conntrack_max from path, or MaxPath when path is empty.
// The value is that of the network namespace of the thread that opens the
// file.
func ReadMax(path string) (uint64, error) {
	if path == "" {
		path = MaxPath
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading conntrack max: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return v, nil
}
