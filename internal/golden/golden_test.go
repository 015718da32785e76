package golden

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.golden")
	*update = true
	Check(t, path, []byte("one\n"))
	*update = false
	if b, err := os.ReadFile(path); err != nil || string(b) != "one\n" {
		t.Fatalf("-update wrote %q, %v", b, err)
	}
	if !Check(t, path, []byte("one\n")) {
		t.Fatal("equal output reported as different")
	}
	var r testing.TB = &recorder{TB: t}
	if Check(r, path, []byte("two\n")) || !r.(*recorder).failed {
		t.Fatal("a difference was not reported")
	}
}

// recorder records Errorf instead of failing the real test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(string, ...any)     { r.failed = true }
func (r *recorder) Fatalf(f string, a ...any) { r.TB.Fatalf(f, a...) }
