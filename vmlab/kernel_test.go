package vmlab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/kmod/kmodtest"
	"github.com/snatrace/snatrace/vmlab/vmlabtest"
)

const rel = "6.1.0-99-test-amd64"

func mod(t *testing.T, name, release string, deps string) []byte {
	return kmodtest.Module(t, "name="+name, "depends="+deps, "vermagic="+release+" SMP mod_unload")
}

func TestImageRelease(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "vmlinuz")
	os.WriteFile(img, vmlabtest.FakeImage(rel), 0o644)
	if got, err := ImageRelease(img); err != nil || got != rel {
		t.Errorf("ImageRelease = %q %v, want %q", got, err, rel)
	}
	not := filepath.Join(dir, "hostname")
	os.WriteFile(not, []byte("node-1\n"), 0o644)
	if _, err := ImageRelease(not); !errors.Is(err, ErrNotKernel) {
		t.Errorf("a text file: %v, want ErrNotKernel", err)
	}
}

func TestOpenKernelPackage(t *testing.T) {
	dir := t.TempDir()
	deb := vmlabtest.WriteDeb(t, dir, vmlabtest.Deb{Release: rel, Image: true, Modules: map[string][]byte{
		"kernel/net/netfilter/nf_nat.ko": mod(t, "nf_nat", rel, ""),
		"modules.builtin":                []byte("kernel/net/bridge/bridge.ko\n"),
	}})
	work := t.TempDir()
	k, err := OpenKernel(deb, "", work)
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != rel || k.Package != deb || k.Modules == nil || !k.Modules.Has("nf_nat") || !k.Modules.Has("bridge") ||
		k.imageName() != "boot/vmlinuz-"+rel || !strings.HasPrefix(k.Image, work) {
		t.Errorf("kernel %+v", k)
	}
}

// Bad --kernel and --modules inputs are refused with a message naming what
// is wrong.
func TestOpenKernelRefuses(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a kernel"), 0o644)
	image := filepath.Join(dir, "vmlinuz-"+rel)
	os.WriteFile(image, vmlabtest.FakeImage(rel), 0o644)
	other := filepath.Join(dir, "lib", "modules", "6.1.0-1-other")
	os.MkdirAll(filepath.Join(other, "kernel"), 0o755)
	os.WriteFile(filepath.Join(other, "kernel", "veth.ko"), mod(t, "veth", "6.1.0-1-other", ""), 0o644)
	tests := []struct {
		name, file, modules, want string
	}{
		{"text file", text, "", "not a kernel image (bzImage) or a Debian kernel package (.deb)"},
		{"missing file", filepath.Join(dir, "nope"), "", "no such file or directory"},
		{"package without modules", vmlabtest.WriteDeb(t, t.TempDir(), vmlabtest.Deb{Release: rel, Image: true}), "",
			"holds no lib/modules/" + rel + ": a package without modules? give --modules DIR"},
		{"meta-package", vmlabtest.WriteDeb(t, t.TempDir(), vmlabtest.Deb{Release: rel, Extra: map[string][]byte{"./usr/share/doc/x": nil}}), "",
			"holds no boot/vmlinuz-*: a meta-package? give the versioned linux-image package"},
		{"modules of another kernel", image, other, "are the modules of kernel 6.1.0-1-other, but the image is " + rel + ": modules and kernel do not match"},
		{"path traversal", vmlabtest.WriteDeb(t, t.TempDir(), vmlabtest.Deb{Release: rel, Image: true, Extra: map[string][]byte{"./lib/modules/../../../etc/passwd": []byte("x")}}), "",
			"outside the package root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenKernel(tt.file, tt.modules, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenKernel: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A kernel whose modules lack what the lab needs is refused before it boots.
func TestBuildImageNeedsFeatures(t *testing.T) {
	dir := filepath.Join(t.TempDir(), rel)
	os.MkdirAll(filepath.Join(dir, "kernel/net/netfilter"), 0o755)
	os.WriteFile(filepath.Join(dir, "kernel/net/netfilter/nf_conntrack.ko"), mod(t, "nf_conntrack", rel, ""), 0o644)
	image := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(image, vmlabtest.FakeImage(rel), 0o644)
	k, err := OpenKernel(image, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = BuildImage(k, t.TempDir(), ImageOptions{})
	var me *MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "kernel "+rel+" has no [nf_nat nf_tables nft_chain_nat nft_masq nf_conntrack_netlink veth bridge]") {
		t.Errorf("BuildImage: %v", err)
	}
}
