//go:build !windows

package vmlab

import "syscall"

// ownProcessGroup starts a child in a process group of its own.
func ownProcessGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
