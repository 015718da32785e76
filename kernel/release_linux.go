//go:build linux

package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Release returns the running kernel's release, as uname -r prints it.
func Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("reading the kernel release: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
