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
// (NFNLGRP_NFTABLES), each with the objects its events named.
type Monitor struct {
	c *netlink.Conn
}

// Commit is one committed transaction: the events that ended with its
// NFT_MSG_NEWGEN. Lost means the kernel could not deliver some events
// (ENOBUFS) or the transaction named more than MaxCommitEvents objects:
// anything may have changed, and the caller must re-read.
type Commit struct {
	Lost   bool
	Events []Event
	// Gen is the ruleset generation the commit made (NFTA_GEN_ID of its
	// NFT_MSG_NEWGEN); 0 for a Lost commit of ENOBUFS.
	Gen uint32
}

// ChangesChains reports whether the commit may have added, changed or
// deleted a chain or table (or lost its events): a cached chain list is
// then stale.
func (c Commit) ChangesChains() bool {
	if c.Lost {
		return true
	}
	for _, ev := range c.Events {
		switch ev.Type {
		case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, MsgDestroyTable,
			unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN, MsgDestroyChain:
			return true
		}
	}
	return false
}

// Event is one object a transaction added, changed or deleted.
type Event struct {
	// Type is the message type: unix.NFT_MSG_NEWRULE, NFT_MSG_DELCHAIN...
	Type   uint16
	Family byte
	Table  string
	// Name is the chain of a chain or rule event, the set of a set or set
	// element event, "" otherwise.
	Name string
	// Data holds the attributes of a chain event (its hook, type and
	// policy, as a chain dump gives them), nil for the others.
	Data []byte
}

// Message types of the destroy commands (6.3+), which x/sys/unix does not
// name: a transaction that destroys an object may report it with them.
const (
	MsgDestroyTable   = 26
	MsgDestroyChain   = 27
	MsgDestroyRule    = 28
	MsgDestroySet     = 29
	MsgDestroySetElem = 30
)

// MaxCommitEvents bounds the events kept per commit: a transaction that
// loads 100,000 rules is reported as Lost rather than held in memory.
const MaxCommitEvents = 4096

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
	// Losing events to a full buffer is reported as a Lost commit.
	_ = c.SetOption(netlink.NoENOBUFS, false)
	return &Monitor{c: c}, nil
}

// Run signals events (without blocking: one pending signal is enough) for
// every commit until ctx ends; see RunCommits.
func (m *Monitor) Run(ctx context.Context, events chan<- struct{}) error {
	return m.RunCommits(ctx, func(Commit) {
		select {
		case events <- struct{}{}:
		default:
		}
	})
}

// RunCommits calls fn with every commit until ctx ends, then closes the
// monitor and returns nil. A socket that fails otherwise ends RunCommits
// with the error: the caller must know that it no longer hears about
// changes.
func (m *Monitor) RunCommits(ctx context.Context, fn func(Commit)) error {
	stop := context.AfterFunc(ctx, func() { m.c.Close() })
	defer stop()
	var cur Commit
	for {
		msgs, err := m.c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			fn(Commit{Lost: true})
			cur = Commit{}
			continue
		}
		if err != nil {
			m.c.Close()
			return fmt.Errorf("reading nftables events: %w", err)
		}
		for _, msg := range msgs {
			if cur.add(msg) {
				fn(cur)
				cur = Commit{}
			}
		}
	}
}

// add records one event message; it reports whether the message ended the
// commit (NFT_MSG_NEWGEN).
func (c *Commit) add(msg netlink.Message) bool {
	typ := uint16(msg.Header.Type) & 0xff
	if typ == unix.NFT_MSG_NEWGEN {
		if len(msg.Data) > 4 {
			Walk(msg.Data[4:], func(t uint16, v []byte) error {
				if t == unix.NFTA_GEN_ID && len(v) == 4 {
					c.Gen = be32(v)
				}
				return nil
			})
		}
		return true
	}
	if c.Lost || len(msg.Data) < 4 {
		return false
	}
	if len(c.Events) == MaxCommitEvents {
		c.Lost, c.Events = true, nil
		return false
	}
	ev, err := ParseEvent(typ, msg.Data)
	if err != nil {
		c.Lost, c.Events = true, nil
		return false
	}
	c.Events = append(c.Events, ev)
	return false
}

// ParseEvent decodes one event message: data is the nfgenmsg header and
// the attributes.
func ParseEvent(typ uint16, data []byte) (Event, error) {
	if len(data) < 4 {
		return Event{Type: typ}, fmt.Errorf("decoding an nftables event: %d bytes, shorter than its header", len(data))
	}
	ev := Event{Type: typ, Family: data[0]}
	tableAttr, nameAttr := uint16(1), uint16(0) // NFTA_*_TABLE is 1 for chains, rules, sets, elements
	switch typ {
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, MsgDestroyTable:
		tableAttr = unix.NFTA_TABLE_NAME
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN, MsgDestroyChain:
		nameAttr = unix.NFTA_CHAIN_NAME
		ev.Data = append([]byte(nil), data[4:]...)
	case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, MsgDestroyRule:
		nameAttr = unix.NFTA_RULE_CHAIN
	case unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET, MsgDestroySet:
		nameAttr = unix.NFTA_SET_NAME
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM, MsgDestroySetElem:
		nameAttr = unix.NFTA_SET_ELEM_LIST_SET
	}
	err := Walk(data[4:], func(t uint16, v []byte) error {
		switch t {
		case tableAttr:
			ev.Table = CString(v)
		case nameAttr:
			ev.Name = CString(v)
		}
		return nil
	})
	if err != nil {
		return ev, fmt.Errorf("decoding an nftables event: %w", err)
	}
	return ev, nil
}

// Close stops the monitor; a Run in progress returns its error.
func (m *Monitor) Close() error { return m.c.Close() }
