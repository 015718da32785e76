//go:build linux

package podmantest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// TestLeavesNothing: after a test that imported an image and ran a
// container of it, nothing of Podman's is mounted under its directory,
// which can then be removed.
func TestLeavesNothing(t *testing.T) {
	testenv.NeedRoot(t, "runs rootful podman")
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		testenv.Skip(t, "needs busybox (busybox-static; .ci/run installs it)")
	}
	dir := t.TempDir()
	t.Run("inner", func(t *testing.T) {
		p := New(t, dir, netnstest.New(t, "podmantest"))
		rootfs := filepath.Join(dir, "rootfs")
		os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
		bb, err := os.ReadFile(busybox)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755)
		tarball := filepath.Join(dir, "rootfs.tar")
		if out, err := exec.Command("tar", "-C", rootfs, "-cf", tarball, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v: %s", err, out)
		}
		p.Run(t, "import", tarball, "localhost/snt-podmantest:1")
		if out := p.Run(t, "run", "--rm", "--network=none", "localhost/snt-podmantest:1", "/bin/busybox", "echo", "hello"); out != "hello" {
			t.Fatalf("the container said %q", out)
		}
		p.Run(t, "run", "-d", "--network=none", "localhost/snt-podmantest:1", "/bin/busybox", "sleep", "60")
	})
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), " "+dir) {
		t.Errorf("still mounted under %s:\n%s", dir, b)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("removing the directory: %v", err)
	}
}
