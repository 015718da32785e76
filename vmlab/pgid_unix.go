//go:build !windows

package vmlab

import (
	"os"
	"syscall"
)

// ownProcessGroup starts a child in a process group of its own.
func ownProcessGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group p leads (started with ownProcessGroup).
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }
