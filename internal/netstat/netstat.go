// Package netstat reads the kernel's SNMP counter files, /proc/net/netstat
// (TcpExt, IpExt, MPTcpExt) and /proc/net/snmp (Ip, Tcp, Udp...), by counter
// name. Kernels add counters (6.16 split TcpExt PAWSTimewait off PAWSEstab),
// and a fixed struct such as prometheus/procfs's does not know the new ones.
package netstat

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Counters holds a file's counters by group ("TcpExt") and name
// ("PAWSTimewait").
type Counters map[string]map[string]uint64

// Get returns a counter and whether the kernel has it.
func (c Counters) Get(group, name string) (uint64, bool) {
	v, ok := c[group][name]
	return v, ok
}

// Parse reads a file of line pairs, "Group: name1 name2..." followed by
// "Group: value1 value2...", as /proc/net/netstat and /proc/net/snmp are
// written. Negative values (Tcp MaxConn is -1) are left out; a value line
// whose group or field count differs from its name line, a value that is
// not a number, and a name line without values are errors.
func Parse(r io.Reader) (Counters, error) {
	c := Counters{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		names := sc.Text()
		if strings.TrimSpace(names) == "" {
			continue
		}
		group, nameList, ok := strings.Cut(names, ":")
		if !ok || group == "" {
			return nil, fmt.Errorf("line %d: %q is not \"Group: names\"", line, short(names))
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("line %d: %s names without a value line", line, group)
		}
		line++
		vgroup, valueList, ok := strings.Cut(sc.Text(), ":")
		if !ok || vgroup != group {
			return nil, fmt.Errorf("line %d: want the values of %s, got %q", line, group, short(sc.Text()))
		}
		ns, vs := strings.Fields(nameList), strings.Fields(valueList)
		if len(ns) != len(vs) {
			return nil, fmt.Errorf("line %d: %s has %d names and %d values", line, group, len(ns), len(vs))
		}
		m := c[group]
		if m == nil {
			m = make(map[string]uint64, len(ns))
			c[group] = m
		}
		for i, n := range ns {
			v, err := strconv.ParseUint(vs[i], 10, 64)
			if err != nil {
				if _, ierr := strconv.ParseInt(vs[i], 10, 64); ierr == nil {
					continue // a negative constant, not a counter
				}
				return nil, fmt.Errorf("line %d: %s %s: %q is not a counter", line, group, n, short(vs[i]))
			}
			m[n] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading counters: %w", err)
	}
	return c, nil
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
