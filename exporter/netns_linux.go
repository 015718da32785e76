//go:build linux

package exporter

import (
	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/netns"
)

// ConntrackOf returns the conntrack readers of namespace ns: ctnetlink with a
// socket opened inside it, /proc and nf_conntrack_max read from an OS thread
// that enters it for the read.
func ConntrackOf(ns *netns.NS) Option {
	return WithConntrack(
		func() (ctstat.Snapshot, error) { return ctstat.ReadNetlink(ns.Fd()) },
		func() (s ctstat.Snapshot, err error) {
			err = ns.Do(func() error { s, err = ctstat.ReadProc(ctstat.ProcPath); return err })
			return s, err
		},
		func() (v uint64, err error) {
			err = ns.Do(func() error { v, err = ctstat.ReadMax(""); return err })
			return v, err
		},
	)
}
