//go:build !linux

package exporter

import "errors"

// KernelRelease needs Linux.
func KernelRelease() (string, error) { return "", errors.New("kernel release: not Linux") }
