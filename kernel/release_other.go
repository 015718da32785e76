//go:build !linux

package kernel

import "errors"

// Release returns the running kernel's release; it needs Linux.
func Release() (string, error) { return "", errors.New("reading the kernel release needs Linux") }
