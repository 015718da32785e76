//go:build !linux

package exporter

import "github.com/snatrace/snatrace/netns"

// ConntrackOf keeps the defaults: namespaces need Linux.
func ConntrackOf(ns *netns.NS) Option { return func(*Exporter) {} }
