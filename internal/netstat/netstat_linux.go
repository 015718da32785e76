//go:build linux

package netstat

import (
	"fmt"
	"os"

	"github.com/snatrace/snatrace/netns"
)

// ReadIn reads /proc/net/netstat and /proc/net/snmp of ns (nil: the
// process's own namespace) into one Counters. /proc/net is the main thread's
// namespace, so the files are read through /proc/thread-self on a thread
// inside ns.
func ReadIn(ns *netns.NS) (Counters, error) {
	c := Counters{}
	dir := "/proc/thread-self/net/"
	if ns == nil {
		dir = "/proc/net/" // the main thread's: the process's namespace
	}
	read := func() error {
		for _, f := range []string{dir + "netstat", dir + "snmp"} {
			fh, err := os.Open(f)
			if err != nil {
				return err
			}
			part, err := Parse(fh)
			fh.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			for g, m := range part {
				c[g] = m
			}
		}
		return nil
	}
	var err error
	if ns == nil {
		err = read()
	} else {
		err = ns.Do(read)
	}
	if err != nil {
		return nil, fmt.Errorf("reading TCP counters of %s: %w", nsName(ns), err)
	}
	return c, nil
}

func nsName(ns *netns.NS) string {
	if ns == nil {
		return "this namespace"
	}
	return ns.String()
}
