package exporter

import (
	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/natmodel"
)

// Kernel eras of snatrace_kernel_info{era}, after KERNEL.md: before 5.0 the
// port search starts at a shared rover; from 5.0 it starts at a random offset
// with at most 128 attempts; from 6.5 it may also evict TIME_WAIT entries.
var (
	EraLegacy  = natmodel.Legacy.String()
	Era50      = natmodel.Era50.String()
	Era65      = natmodel.Era65.String()
	EraUnknown = "unknown"
)

// KernelEra returns the era of a kernel release string such as
// "6.18.44-fc-v769" or "4.19.0-27-amd64", or EraUnknown and the parse error.
func KernelEra(release string) (string, error) {
	v, err := kernel.ParseVersion(release)
	if err != nil {
		return EraUnknown, err
	}
	return natmodel.ClassOf(v).String(), nil
}
