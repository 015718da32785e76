//go:build !linux

package ctstat

import (
	"errors"

	"github.com/snatrace/snatrace/netns"
)

var errNotLinux = errors.New("ctnetlink needs Linux")

// ReadNetlink needs Linux; elsewhere it returns an error.
func ReadNetlink(ns *netns.NS) (Snapshot, error) { return Snapshot{}, errNotLinux }

// ReadNetlinkGlobal needs Linux; elsewhere it returns an error.
func ReadNetlinkGlobal(ns *netns.NS) (Global, error) { return Global{}, errNotLinux }

// ReadProcIn reads the caller's own statistics off Linux (there are none).
func ReadProcIn(ns *netns.NS) (Snapshot, error) {
	if ns != nil {
		return Snapshot{}, errNotLinux
	}
	return ReadProc(ProcPath)
}

// ReadMaxIn reads the caller's own nf_conntrack_max off Linux (there is none).
func ReadMaxIn(ns *netns.NS) (uint64, error) {
	if ns != nil {
		return 0, errNotLinux
	}
	return ReadMax("")
}

// NetlinkReader needs Linux.
type NetlinkReader struct{}

// NewNetlinkReader returns a reader whose reads fail: ctnetlink needs Linux.
func NewNetlinkReader(*netns.NS) *NetlinkReader { return &NetlinkReader{} }

// Read fails: ctnetlink needs Linux.
func (*NetlinkReader) Read() (Snapshot, error) { return Snapshot{}, errNotLinux }

// Close does nothing.
func (*NetlinkReader) Close() error { return nil }
