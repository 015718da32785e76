// Package kernel names the running Linux kernel and parses kernel version
// strings.
//
// It exists because the SNAT race depends on the kernel: the port search
// changed in 5.0 and 6.5, the conntrack counters were renamed in 5.10 and
// 5.15. Every job that judges a kernel (audit, the exporter's era label, the
// simulator's era, the lab's report) reads its version here, in one way that
// accepts every release string seen in the field: distribution suffixes
// ("4.19.0-27-amd64", "4.18.0-305.el8.x86_64"), release candidates
// ("5.4-rc1") and four-part versions ("5.15.153.1-microsoft-standard-WSL2").
package kernel

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a kernel version: the leading numbers of a release string.
// Numbers after the third (WSL's "5.15.153.1") do not change behaviour and
// are dropped.
type Version struct {
	Major, Minor, Patch int
}

// String returns "major.minor.patch".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return !v.Less(Version{Major: major, Minor: minor})
}

// ParseVersion reads the version at the start of a release string such as
// "6.18.44-fc-v1045": an optional "v", MAJOR.MINOR, optional further
// ".NUMBER" parts, then an optional suffix that starts with neither a digit
// nor a dot. A missing patch level is 0. Errors name the input and what is
// wrong.
func ParseVersion(release string) (Version, error) {
	s := strings.TrimPrefix(strings.TrimSpace(release), "v")
	var nums [3]int
	for part := 0; ; part++ {
		j := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == 0 {
			return Version{}, fmt.Errorf("parsing kernel version %q: want MAJOR.MINOR[.PATCH], got %q at part %d", release, clip(s), part+1)
		}
		if j > 6 {
			return Version{}, fmt.Errorf("parsing kernel version %q: number %q is too long", release, s[:j])
		}
		n, _ := strconv.Atoi(s[:j])
		if part < len(nums) {
			nums[part] = n
		}
		s = s[j:]
		if s == "" || s[0] != '.' {
			if part == 0 {
				return Version{}, fmt.Errorf("parsing kernel version %q: want MAJOR.MINOR, no minor number", release)
			}
			return Version{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
		}
		s = s[1:] // the dot: a number must follow
	}
}

func clip(s string) string {
	if len(s) > 20 {
		return s[:17] + "..."
	}
	return s
}
