//go:build !linux

package exporter

import "errors"

// NetNS is an open network namespace to watch (Linux only).
type NetNS struct{ Path string }

// OpenNetNS needs Linux.
func OpenNetNS(spec string) (*NetNS, error) { return nil, errors.New("network namespaces need Linux") }

// Close does nothing.
func (n *NetNS) Close() error { return nil }

// FD is -1.
func (n *NetNS) FD() int { return -1 }

// Option keeps the defaults.
func (n *NetNS) Option() Option { return func(*Exporter) {} }
