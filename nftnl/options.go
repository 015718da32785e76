package nftnl

import (
	"github.com/mdlayher/netlink/nltest"

	"github.com/snatrace/snatrace/netns"
)

// Option configures Dial.
type Option func(*config)

// WithNetNS dials inside ns (nil: the caller's namespace).
func WithNetNS(ns *netns.NS) Option { return func(c *config) { c.ns = ns } }

// WithTestDial sends every request to fn instead of the kernel.
func WithTestDial(fn nltest.Func) Option { return func(c *config) { c.test = fn } }
