package vmlab

import (
	"os"
	"testing"

	"github.com/snatrace/snatrace/vmlab/guest"
	"github.com/snatrace/snatrace/vmlab/vmlabtest"
)

// BenchmarkGuestImage measures the two host-side steps of lab --kernel on a
// stock kernel package: unpacking it, and writing the initramfs (with this
// test binary as the guest's snatrace).
func BenchmarkGuestImage(b *testing.B) {
	deb := vmlabtest.StockKernel(b)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unpack", func(b *testing.B) {
		for range b.N {
			work := b.TempDir()
			if _, err := OpenKernel(deb, "", work); err != nil {
				b.Fatal(err)
			}
		}
	})
	work := b.TempDir()
	k, err := OpenKernel(deb, "", work)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("initramfs", func(b *testing.B) {
		var img *Image
		for range b.N {
			if img, err = BuildImage(k, b.TempDir(), ImageOptions{Binary: exe, Guest: guest.Config{Args: []string{"lab"}}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(img.Bytes)/(1<<20), "MiB")
		b.ReportMetric(float64(img.Modules), "modules")
	})
}
