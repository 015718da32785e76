package hugepage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

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

// TestPrefault faults in fresh memory without changing it: every page of
// an untouched 8 MiB mapping is resident afterwards (mincore), and the
// bytes written before it, some of them inside the pages it faults in,
// are still there.
func TestPrefault(t *testing.T) {
	const n = 8 << 20
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if r := resident(t, m); r != 0 {
		t.Fatalf("%d pages of a fresh mapping already resident", r)
	}
	if err := unix.Madvise(m[:pageSize], unix.MADV_POPULATE_WRITE); errors.Is(err, unix.EINVAL) {
		testenv.Skip(t, "this kernel has no MADV_POPULATE_WRITE (Linux 5.14 and later): %v", err)
	}
	for i := 0; i < n; i += 3 * 4096 {
		m[i] = byte(i>>12) | 1
	}
	Prefault(m[1:])()
	if r, want := resident(t, m), n/int(pageSize); r != want {
		t.Errorf("%d of %d pages resident after Prefault", r, want)
	}
	for i := range m {
		want := byte(0)
		if i%(3*4096) == 0 {
			want = byte(i>>12) | 1
		}
		if m[i] != want {
			t.Fatalf("byte %d is %d after Prefault, want %d", i, m[i], want)
		}
	}
}

// resident counts m's pages in memory.
func resident(t *testing.T, m []byte) int {
	t.Helper()
	vec := make([]byte, (len(m)+int(pageSize)-1)/int(pageSize))
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	r := 0
	for _, v := range vec {
		r += int(v & 1)
	}
	return r
}
