// Package vmlabtest makes kernel inputs for vmlab's tests: fake kernel
// images and packages with the structure of real ones, and the real stock
// kernel package CI downloads.
package vmlabtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/blakesmith/ar"

	"github.com/snatrace/snatrace/internal/testenv"
)

// FakeImage returns the first bytes of an x86 bzImage whose setup header
// names release: enough for vmlab.ImageRelease, not to boot.
func FakeImage(release string) []byte {
	b := make([]byte, 0x600)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	binary.LittleEndian.PutUint16(b[0x20e:], 0x300)
	copy(b[0x500:], release+" (builder@example) #1 SMP PREEMPT_DYNAMIC Debian")
	return b
}

// Deb describes a fake kernel package.
type Deb struct {
	Release string
	// Image includes boot/vmlinuz-RELEASE.
	Image bool
	// Modules are files under lib/modules/RELEASE, by relative path.
	Modules map[string][]byte
	// Extra are other data.tar entries (name → contents).
	Extra map[string][]byte
}

// WriteDeb writes d as a Debian package (ar with debian-binary,
// control.tar.gz and data.tar.gz) under dir and returns its path.
func WriteDeb(t testing.TB, dir string, d Deb) string {
	t.Helper()
	var data bytes.Buffer
	gz := gzip.NewWriter(&data)
	tw := tar.NewWriter(gz)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Name: "./", Mode: 0o755, Typeflag: tar.TypeDir})
	if d.Image {
		add("./boot/vmlinuz-"+d.Release, FakeImage(d.Release))
	}
	for p, b := range d.Modules {
		add("./lib/modules/"+d.Release+"/"+p, b)
	}
	for p, b := range d.Extra {
		add(p, b)
	}
	tw.Close()
	gz.Close()
	path := filepath.Join(dir, "linux-image-"+d.Release+"_1_amd64.deb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := ar.NewWriter(f)
	w.WriteGlobalHeader()
	for _, m := range []struct {
		name string
		b    []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", nil}, {"data.tar.gz", data.Bytes()}} {
		w.WriteHeader(&ar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.b))})
		w.Write(m.b)
	}
	return path
}

// KernelEnv names the stock kernel package the VM tests boot (.ci/run
// downloads one and sets it).
const KernelEnv = "SNATRACE_TEST_KERNEL"

// StockKernel returns the stock kernel package to boot, or skips (fails in
// CI) when there is none.
func StockKernel(t testing.TB) string {
	t.Helper()
	p := os.Getenv(KernelEnv)
	if p == "" {
		testenv.Skip(t, "%s is not set (a Debian linux-image .deb; .ci/run downloads one)", KernelEnv)
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Skip(t, "%s: %v", KernelEnv, err)
	}
	return p
}
