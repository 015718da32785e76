//go:build linux

package nftnl

import (
	"context"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns"
)

// Monitor reports committed nftables transactions of a namespace
// (NFNLGRP_NFTABLES): one signal per batch of messages that ends a commit
// (NFT_MSG_NEWGEN), or that the kernel could not deliver (ENOBUFS: events
// were lost, so the caller must re-read anyway).
type Monitor struct {
	c *netlink.Conn
}

// NewMonitor subscribes to the ruleset events of ns (nil: the caller's).
func NewMonitor(ns *netns.NS) (*Monitor, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns.Fd()})
	if err != nil {
		return nil, fmt.Errorf("opening the nftables monitor in %s: %w", ns, err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, fmt.Errorf("joining the nftables event group: %w", err)
	}
	// Events are only a signal to re-read: losing some to a full buffer is
	// reported as an event too.
	_ = c.SetOption(netlink.NoENOBUFS, false)
	return &Monitor{c: c}, nil
}

// Run signals events (without blocking: one pending signal is enough) for
// every commit until ctx ends, then closes the monitor and returns nil. A
// socket that fails otherwise ends Run with the error: the caller must know
// that it no longer hears about changes.
func (m *Monitor) Run(ctx context.Context, events chan<- struct{}) error {
	stop := context.AfterFunc(ctx, func() { m.c.Close() })
	defer stop()
	for {
		msgs, err := m.c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		commit := errors.Is(err, unix.ENOBUFS)
		if err != nil && !commit {
			m.c.Close()
			return fmt.Errorf("reading nftables events: %w", err)
		}
		for _, msg := range msgs {
			commit = commit || uint16(msg.Header.Type)&0xff == unix.NFT_MSG_NEWGEN
		}
		if !commit {
			continue
		}
		select {
		case events <- struct{}{}:
		default:
		}
	}
}

// Close stops the monitor; a Run in progress returns its error.
func (m *Monitor) Close() error { return m.c.Close() }
