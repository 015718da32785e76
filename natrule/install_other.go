//go:build !linux

package natrule

import (
	"context"
	"errors"

	"github.com/snatrace/snatrace/netns"
)

var errNotLinux = errors.New("installing NAT rules needs Linux")

// Install is only available on Linux.
func Install(ctx context.Context, ns *netns.NS, backend Backend, rules []Rule) error {
	return errNotLinux
}

// Remove is only available on Linux.
func Remove(ctx context.Context, ns *netns.NS, backend Backend) error { return errNotLinux }

// Dump is only available on Linux.
func Dump(ctx context.Context, ns *netns.NS, backend Backend) (string, error) {
	return "", errNotLinux
}
