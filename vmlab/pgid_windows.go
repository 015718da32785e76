package vmlab

import (
	"os"
	"syscall"
)

// ownProcessGroup is the default on Windows, which has no process groups
// of this kind (QEMU under snatrace lab --kernel is run on Linux).
func ownProcessGroup() *syscall.SysProcAttr { return nil }

// killGroup kills p.
func killGroup(p *os.Process) error { return p.Kill() }
