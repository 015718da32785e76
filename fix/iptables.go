package fix

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/snatrace/snatrace/xtables"
	"strconv"
	"strings"
)

// SaveTable is one table of an iptables-save dump: its chains' rule lines in
// order, counters stripped.
type SaveTable struct {
	Name   string
	Chains map[string][]string
	// Counters holds the "[packets:bytes]" prefix of each rule line of a
	// dump taken with -c, by chain, in order ("" without -c).
	Counters map[string][]string
	// direct is the kernel's table the lines were printed from (an
	// iptables-legacy nat table of either family read through xtables), nil for a save
	// tool's output: a commit then sets the flag in it instead of running
	// iptables-restore.
	direct *xtables.Parsed
	// committed is true after a direct commit, whose table's
	// fingerprint is committedFP (xtables.Table.Fingerprint): the table
	// itself is not kept, its memory is read into again.
	committed   bool
	committedFP uint64
	// spent is true from the look before a direct commit on: direct's
	// memory was read into again (it may hold another table) or the
	// commit changed the table, so that neither direct nor the lines
	// describe the kernel's table. Only the commit's verification uses s
	// after; anything else must read the table again.
	spent bool
	// warning is what a direct commit that went through wants said (its
	// counters could not be carried over).
	warning string
}

// ParseSave reads the named table of an iptables-save dump (with or without
// -c). Rule lines are kept as iptables-save prints them ("-A CHAIN ...").
func ParseSave(dump, table string) (*SaveTable, error) {
	t := &SaveTable{Name: table, Chains: map[string][]string{}, Counters: map[string][]string{}}
	in, seen := false, false
	for n, line := range strings.Split(dump, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			in = line[1:] == table
			seen = seen || in
		case line == "COMMIT":
			in = false
		case !in:
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				return nil, fmt.Errorf("line %d: empty chain line", n+1)
			}
			if _, ok := t.Chains[f[0]]; !ok {
				t.Chains[f[0]] = nil
			}
		default:
			counters := ""
			if strings.HasPrefix(line, "[") {
				i := strings.IndexByte(line, ']')
				if i < 0 {
					return nil, fmt.Errorf("line %d: unterminated counters", n+1)
				}
				counters, line = line[:i+1], strings.TrimLeft(line[i+1:], " ")
			}
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "-A" {
				return nil, fmt.Errorf("line %d: want -A CHAIN ..., got %q", n+1, clip(line))
			}
			t.Chains[f[1]] = append(t.Chains[f[1]], line)
			t.Counters[f[1]] = append(t.Counters[f[1]], counters)
		}
	}
	if !seen {
		return nil, fmt.Errorf("no *%s table in the dump", table)
	}
	return t, nil
}

// Checksum returns a hex SHA-256 of the chain's rule lines in order; a chain
// that does not exist sums to "absent".
func (t *SaveTable) Checksum(chain string) string {
	lines, ok := t.Chains[chain]
	if !ok {
		return "absent"
	}
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Replacement is one "-R CHAIN N" line of an iptables-restore document.
type Replacement struct {
	Chain    string
	Position int
	// Line is the new rule as iptables-save prints it ("-A CHAIN ...").
	Line string
	// Counters is "[packets:bytes]" to give the new rule (restore -c), or "".
	Counters string
}

// RestoreDoc renders an iptables-restore --noflush document that replaces
// each rule at its position with its new line, in one table commit.
func RestoreDoc(table string, reps []Replacement) (string, error) {
	var b strings.Builder
	b.WriteString("*" + table + "\n")
	for _, r := range reps {
		rest, ok := strings.CutPrefix(r.Line, "-A "+r.Chain+" ")
		if !ok {
			return "", fmt.Errorf("chain %s position %d: rule %q does not start with -A %s", r.Chain, r.Position, clip(r.Line), r.Chain)
		}
		if r.Position < 1 {
			return "", fmt.Errorf("chain %s: bad position %d", r.Chain, r.Position)
		}
		if r.Counters != "" {
			b.WriteString(r.Counters + " ")
		}
		b.WriteString("-R " + r.Chain + " " + strconv.Itoa(r.Position) + " " + rest + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}
