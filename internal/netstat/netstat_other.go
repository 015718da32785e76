//go:build !linux

package netstat

import (
	"errors"

	"github.com/snatrace/snatrace/netns"
)

// ReadIn needs Linux's /proc/net.
func ReadIn(ns *netns.NS) (Counters, error) {
	return nil, errors.New("reading TCP counters: /proc/net/netstat is Linux only")
}
