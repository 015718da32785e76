package exporter

import (
	"fmt"
	"strconv"
	"strings"
)

// Kernel eras of snatrace_kernel_info{era}, after KERNEL.md: before 5.0 the
// port search starts at a shared rover; from 5.0 it starts at a random offset
// with at most 128 attempts; from 6.5 it may also evict TIME_WAIT entries.
const (
	EraLegacy  = "legacy"
	Era50      = "5.0"
	Era65      = "6.5"
	EraUnknown = "unknown"
)

// KernelEra returns the era of a kernel release string such as
// "6.18.44-fc-v769" or "4.19.0-27-amd64".
func KernelEra(release string) (string, error) {
	major, minor, err := kernelVersion(release)
	if err != nil {
		return EraUnknown, err
	}
	switch {
	case major < 5:
		return EraLegacy, nil
	case major == 5 || major == 6 && minor < 5:
		return Era50, nil
	default:
		return Era65, nil
	}
}

func kernelVersion(release string) (major, minor int, err error) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("parsing kernel release %q: want MAJOR.MINOR", release)
	}
	major, err = strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("parsing kernel release %q: major: %w", release, err)
	}
	// The minor may be followed by a suffix without a dot: "5.4-rc1".
	m := parts[1]
	if i := strings.IndexFunc(m, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		m = m[:i]
	}
	minor, err = strconv.Atoi(m)
	if err != nil {
		return 0, 0, fmt.Errorf("parsing kernel release %q: minor: %w", release, err)
	}
	return major, minor, nil
}
