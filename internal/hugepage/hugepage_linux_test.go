package hugepage

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/snatrace/snatrace/internal/testenv"
)

// TestSliceMarksMemory checks, in /proc/self/smaps, that the mapping
// holding a marked 8 MiB array is eligible for transparent huge pages, and
// that a small array is left alone.
func TestSliceMarksMemory(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		testenv.Skip(t, "transparent huge pages are off or absent on this kernel (%q, %v)", mode, err)
	}
	big := make([]uint64, 1<<20) // 8 MiB
	Slice(big)
	for i := 0; i < len(big); i += 512 {
		big[i] = uint64(i)
	}
	addr := uintptr(unsafe.Pointer(&big[len(big)/2]))
	eligible, err := thpEligible(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !eligible {
		t.Errorf("the mapping of a marked 8 MiB array is not THPeligible (mode %q)", strings.TrimSpace(string(mode)))
	}
	small := make([]uint64, 1024)
	Slice(small) // below Min: no madvise call, and no error either
}

// thpEligible reads the THPeligible line of the smaps entry holding addr.
func thpEligible(addr uintptr) (bool, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return false, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 { // a mapping's first line
			in = addr >= lo && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "THPeligible:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "THPeligible:")) == "1", nil
		}
	}
	return false, fmt.Errorf("no smaps entry with THPeligible holds %#x", addr)
}
