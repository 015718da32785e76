package initramfs

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// libDirs are where the dynamic linker looks for a library when the binary
// names no run path (glibc's trusted directories on a multiarch system).
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// ErrNotFound is returned for a shared library found in no library directory.
var ErrNotFound = errors.New("shared library not found")

// Needs returns what the ELF file at p needs to run: its interpreter (""
// for a static binary) and its shared libraries, recursively, as host paths.
func Needs(p string) (interp string, libs []string, err error) {
	seen := map[string]bool{}
	var walk func(string, bool) error
	walk = func(file string, top bool) error {
		f, err := elf.Open(file)
		if err != nil {
			return fmt.Errorf("reading %s: %w", file, err)
		}
		defer f.Close()
		if top {
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					b := make([]byte, prog.Filesz)
					if _, err := prog.ReadAt(b, 0); err != nil {
						return fmt.Errorf("reading %s's interpreter: %w", file, err)
					}
					interp = strings.TrimRight(string(b), "\x00")
				}
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("reading %s's libraries: %w", file, err)
		}
		runpath := runPaths(f, filepath.Dir(file))
		for _, name := range needed {
			lib, err := findLib(name, runpath)
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", file, name, err)
			}
			if !seen[lib] {
				seen[lib] = true
				libs = append(libs, lib)
				if err := walk(lib, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return interp, libs, walk(p, true)
}

// runPaths returns the DT_RUNPATH (or DT_RPATH) directories of f, with
// $ORIGIN expanded.
func runPaths(f *elf.File, origin string) []string {
	var dirs []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				if d != "" {
					dirs = append(dirs, strings.ReplaceAll(d, "$ORIGIN", origin))
				}
			}
		}
	}
	return dirs
}

func findLib(name string, runpath []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range append(runpath, libDirs...) {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// Executable copies the host's executable at host to the same path in the
// guest, with its interpreter and shared libraries at theirs.
func (a *Archive) Executable(host string) error {
	interp, libs, err := Needs(host)
	if err != nil {
		return err
	}
	for _, p := range append([]string{host, interp}, libs...) {
		if p == "" {
			continue
		}
		if err := a.Copy(p, p); err != nil {
			return fmt.Errorf("copying %s: %w", p, err)
		}
	}
	return nil
}
