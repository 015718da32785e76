// Package buildtest builds the snatrace command once per test binary, for
// tests that run it as a user does (in a VM guest, against a daemon).
package buildtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Snatrace returns the path of a static snatrace binary built from this
// module, building it on first use. Call Cleanup from TestMain to remove it.
func Snatrace(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, e := os.MkdirTemp("", "snatrace-build-")
		if e != nil {
			err = e
			return
		}
		path = filepath.Join(dir, "snatrace")
		cmd := exec.Command("go", "build", "-o", path, "github.com/snatrace/snatrace/cmd/snatrace")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("go build: %w: %s", e, out)
		}
	})
	if err != nil {
		t.Fatalf("building snatrace: %v", err)
	}
	return path
}

// Cleanup removes the binary Snatrace built.
func Cleanup() {
	if path != "" {
		os.RemoveAll(filepath.Dir(path))
	}
}
