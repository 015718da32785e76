package initramfs

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/snatrace/snatrace/internal/testenv"
)

type entry struct {
	mode cpio.FileMode
	data string
}

func readArchive(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(b))
	out := map[string]entry{}
	for {
		hdr, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[hdr.Name]; dup {
			t.Errorf("%s written twice", hdr.Name)
		}
		if hdr.Mode&cpio.ModeType == cpio.TypeSymlink {
			data = []byte(hdr.Linkname)
		}
		out[hdr.Name] = entry{hdr.Mode, string(data)}
	}
}

func TestArchive(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "real"), []byte("contents"), 0o640)
	os.Symlink("real", filepath.Join(dir, "link"))
	var buf bytes.Buffer
	a := New(&buf)
	for _, err := range []error{
		a.File("/etc/snatrace/guest.json", 0o644, []byte(`{"args":["lab"]}`)),
		a.Symlink("/sbin/modprobe", "/init"),
		a.Copy(filepath.Join(dir, "link"), "/opt/x/link"),
		a.File("/etc/snatrace/guest.json", 0o644, []byte("second write ignored")),
		a.Dir("/run"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.File("relative", 0o644, nil); err == nil {
		t.Error("a relative path was accepted")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got := readArchive(t, buf.Bytes())
	want := map[string]entry{
		"etc":                     {cpio.TypeDir | 0o755, ""},
		"etc/snatrace":            {cpio.TypeDir | 0o755, ""},
		"etc/snatrace/guest.json": {cpio.TypeReg | 0o644, `{"args":["lab"]}`},
		"sbin":                    {cpio.TypeDir | 0o755, ""},
		"sbin/modprobe":           {cpio.TypeSymlink | 0o777, "/init"},
		"opt":                     {cpio.TypeDir | 0o755, ""},
		"opt/x":                   {cpio.TypeDir | 0o755, ""},
		"opt/x/link":              {cpio.TypeSymlink | 0o777, "real"},
		"opt/x/real":              {cpio.TypeReg | 0o640, "contents"},
		"run":                     {cpio.TypeDir | 0o755, ""},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: got %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d: %v", len(got), len(want), got)
	}
	if a.Bytes() != int64(len(`{"args":["lab"]}`)+len("/init")+len("real")+len("contents")) {
		t.Errorf("Bytes() = %d", a.Bytes())
	}
}

// A dynamically linked host binary is copied with its interpreter and every
// library ldd(1) lists.
func TestExecutableCopiesLibraries(t *testing.T) {
	bin, err := exec.LookPath("sh")
	if err != nil {
		testenv.Skip(t, "no sh")
	}
	bin, _ = filepath.EvalSymlinks(bin)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := f.ImportedLibraries()
	f.Close()
	if len(libs) == 0 {
		testenv.Skip(t, "%s is static", bin)
	}
	var buf bytes.Buffer
	a := New(&buf)
	if err := a.Executable(bin); err != nil {
		t.Fatal(err)
	}
	a.Close()
	got := readArchive(t, buf.Bytes())
	ldd, err := exec.Command("ldd", bin).Output()
	if err != nil {
		testenv.Skip(t, "ldd: %v", err)
	}
	for _, line := range strings.Split(string(ldd), "\n") {
		f := strings.Fields(line)
		var p string
		switch {
		case len(f) >= 3 && f[1] == "=>":
			p = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		default:
			continue // linux-vdso
		}
		if _, ok := got[strings.TrimPrefix(p, "/")]; !ok {
			t.Errorf("ldd lists %s, not in the archive", p)
		}
	}
	if _, ok := got[strings.TrimPrefix(bin, "/")]; !ok {
		t.Errorf("the binary %s is not in the archive", bin)
	}
}
