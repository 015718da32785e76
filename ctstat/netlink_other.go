//go:build !linux

package ctstat

import (
	"errors"
)

var errNotLinux = errors.New("ctnetlink needs Linux")

// ReadNetlink needs Linux; elsewhere it returns an error.
func ReadNetlink(nsFD int) (Snapshot, error) { return Snapshot{}, errNotLinux }

// ReadNetlinkGlobal needs Linux; elsewhere it returns an error.
func ReadNetlinkGlobal(nsFD int) (Global, error) { return Global{}, errNotLinux }
