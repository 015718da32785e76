// Package initramfs writes Linux initramfs images: a newc cpio archive of
// directories, files and symlinks, with the host's executables copied in
// together with what they need to run (their ELF interpreter and shared
// libraries, found as the dynamic linker finds them).
package initramfs

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Archive is an initramfs being written. Paths are absolute guest paths;
// each is written once (a second write of the same path is ignored) and its
// parent directories are made first. It is not safe for concurrent use.
type Archive struct {
	w     *cpio.Writer
	seen  map[string]bool
	bytes int64
}

// New starts an archive on w. Close finishes it.
func New(w io.Writer) *Archive {
	return &Archive{w: cpio.NewWriter(w), seen: map[string]bool{"/": true}}
}

// Bytes returns the size of the file contents written so far.
func (a *Archive) Bytes() int64 { return a.bytes }

// Has reports whether p was written.
func (a *Archive) Has(p string) bool { return a.seen[path.Clean(p)] }

// Dir writes directory p and its parents.
func (a *Archive) Dir(p string) error {
	p = path.Clean(p)
	if a.seen[p] {
		return nil
	}
	if err := a.Dir(path.Dir(p)); err != nil {
		return err
	}
	a.seen[p] = true
	return a.w.WriteHeader(&cpio.Header{Name: strings.TrimPrefix(p, "/"), Mode: cpio.TypeDir | 0o755})
}

// File writes a regular file p with mode perm.
func (a *Archive) File(p string, perm os.FileMode, data []byte) error {
	return a.entry(p, cpio.TypeReg|cpio.FileMode(perm.Perm()), data)
}

// Symlink writes symlink p pointing to target.
func (a *Archive) Symlink(p, target string) error {
	return a.entry(p, cpio.TypeSymlink|0o777, []byte(target))
}

func (a *Archive) entry(p string, mode cpio.FileMode, data []byte) error {
	p = path.Clean(p)
	if !path.IsAbs(p) {
		return fmt.Errorf("initramfs path %q is not absolute", p)
	}
	if a.seen[p] {
		return nil
	}
	if err := a.Dir(path.Dir(p)); err != nil {
		return err
	}
	a.seen[p] = true
	hdr := &cpio.Header{Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data))}
	if err := a.w.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if _, err := a.w.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	a.bytes += int64(len(data))
	return nil
}

// Copy copies the host's file at host to the guest path p: a symlink as a
// symlink (and, for an absolute or relative target, the target too), a
// regular file with its permissions.
func (a *Archive) Copy(host, p string) error {
	fi, err := os.Lstat(host)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		if err := a.Symlink(p, target); err != nil {
			return err
		}
		next := target
		if !filepath.IsAbs(target) {
			next = filepath.Join(filepath.Dir(host), target)
		}
		guest := target
		if !path.IsAbs(target) {
			guest = path.Join(path.Dir(p), target)
		}
		return a.Copy(next, guest)
	case fi.Mode().IsRegular():
		data, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		return a.File(p, fi.Mode(), data)
	case fi.IsDir():
		return a.Dir(p)
	}
	return fmt.Errorf("%s: not a regular file, directory or symlink", host)
}

// Close writes the archive's trailer.
func (a *Archive) Close() error { return a.w.Close() }
