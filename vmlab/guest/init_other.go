//go:build !linux

package guest

// IsInit is false off Linux.
func IsInit() bool { return false }

// IsModprobe is false off Linux.
func IsModprobe() bool { return false }

// Init is only available on Linux.
func Init() { panic("guest: Init off Linux") }

// Modprobe is only available on Linux.
func Modprobe([]string) int { return 1 }
