package tsoffset

import (
	"fmt"
	"strings"

	"github.com/snatrace/snatrace/kernel"
)

// firstWithPorts are the first releases of each line known to hash the
// ports into the timestamp offset: mainline 7.0 (165573e41f2f, 7.0-rc3) and
// the upstream stable backports named in Debian's changelogs (ChangeLog-6.12.94
// and ChangeLog-6.1.191 list "tcp: secure_seq: add back ports to TS
// offset"; the Debian 6.1.192 and 6.12.118 sources' secure_tcp_seq_and_ts_off
// hash saddr, daddr and both ports with one siphash). Other stable lines
// may have it too: they are "unknown" until probed (6.18.44 has it: this
// project's VM, by Probe).
var firstWithPorts = []struct{ line, first kernel.Version }{
	{kernel.Version{Major: 6, Minor: 12}, kernel.Version{Major: 6, Minor: 12, Patch: 94}},
	{kernel.Version{Major: 6, Minor: 1}, kernel.Version{Major: 6, Minor: 1, Patch: 191}},
}

// ByVersion says what a kernel version is known to do without probing it:
// PerPort from 7.0 and in the stable releases listed above, Unknown
// otherwise. It never answers PerAddress: other stable lines and vendors
// backport on their own schedule, and distribution release strings hide
// the upstream version (Debian's "6.1.0-57-cloud-amd64" is 6.1.192, which
// `uname -v` says): Probe is the answer for a running kernel.
func ByVersion(version string) Detection {
	v, err := kernel.ParseVersion(version)
	if err != nil {
		return Detection{Kind: Unknown, Reason: err.Error()}
	}
	if !v.Less(kernel.Version{Major: 7}) {
		return Detection{Kind: PerPort, Reason: fmt.Sprintf("kernel %s: 7.0 and later hash the ports into the timestamp offset (165573e41f2f)", v)}
	}
	for _, l := range firstWithPorts {
		if v.Major == l.line.Major && v.Minor == l.line.Minor && !v.Less(l.first) {
			return Detection{Kind: PerPort, Reason: fmt.Sprintf("kernel %s: the %d.%d stable line hashes the ports into the timestamp offset from %s", v, v.Major, v.Minor, l.first)}
		}
	}
	return Detection{Kind: Unknown, Reason: fmt.Sprintf("kernel %s: its version does not say whether the timestamp offset depends on the ports (7.0, 6.12.94 and 6.1.191 do; a backport or a distribution's version string would not show): probe it", v)}
}

// ByKernel is ByVersion for a running kernel: release is `uname -r`,
// version `uname -v`, where distributions name the upstream version that
// the release string hides ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3
// (2026-11-26)" for release "6.1.0-57-cloud-amd64"). The upstream version
// is taken from a "Debian X.Y.Z" or "Ubuntu X.Y.Z" in version when there is
// one, from release otherwise.
func ByKernel(release, version string) Detection {
	fields := strings.Fields(version)
	for i, f := range fields {
		if (f == "Debian" || f == "Ubuntu") && i+1 < len(fields) {
			if d := ByVersion(fields[i+1]); d.Kind != Unknown {
				return d
			}
		}
	}
	return ByVersion(release)
}
