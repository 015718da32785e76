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
		ctstat.NewNetlinkReader(ns).Read,
		func() (ctstat.Snapshot, error) { return ctstat.ReadProcIn(ns) },
		func() (uint64, error) { return ctstat.ReadMaxIn(ns) },
	)
}
