package vmlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/snatrace/snatrace/kmod"
)

// ErrNotKernel is returned for a --kernel file that is neither a kernel
// image nor a kernel package.
var ErrNotKernel = errors.New("not a kernel image (bzImage) or a Debian kernel package (.deb)")

// Kernel is a kernel to boot: its image, release and modules.
type Kernel struct {
	// Image is the bzImage file.
	Image string
	// Release is the kernel's release (uname -r), from the image.
	Release string
	// Modules is its modules directory (lib/modules/RELEASE), nil when the
	// kernel comes without one (everything built in, or nothing).
	Modules *kmod.Tree
	// Package is the package it came from, "" for an image.
	Package string
}

// OpenKernel opens file, a bzImage or a Debian kernel package (.deb) that
// holds boot/vmlinuz-* and its modules. A package is unpacked under work.
// modules, if not "", is the modules directory to use instead of the
// package's or, for an image, of /lib/modules/RELEASE when present.
func OpenKernel(file, modules, work string) (*Kernel, error) {
	head := make([]byte, 0x400)
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--kernel: %w", err)
	}
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]
	k := &Kernel{Image: file}
	switch {
	case bytes.HasPrefix(head, []byte("!<arch>\ndebian-binary")):
		k.Package = file
		if k.Image, err = unpackDeb(file, work); err != nil {
			return nil, err
		}
		if k.Release, err = ImageRelease(k.Image); err != nil {
			return nil, fmt.Errorf("--kernel: %s: %w", file, err)
		}
		if modules == "" {
			modules = debModules(work, k.Release)
			if modules == "" {
				return nil, fmt.Errorf("--kernel: %s holds no lib/modules/%s: a package without modules? give --modules DIR", file, k.Release)
			}
		}
	default:
		if k.Release, err = ImageRelease(file); err != nil {
			return nil, fmt.Errorf("--kernel: %s: %w", file, err)
		}
		if dir := filepath.Join("/lib/modules", k.Release); modules == "" && isDir(dir) {
			modules = dir
		}
	}
	if modules != "" {
		if err := k.openModules(modules); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Kernel) openModules(dir string) error {
	t, err := kmod.OpenTree(dir)
	if err != nil {
		return fmt.Errorf("--modules: %w", err)
	}
	if t.Release != k.Release {
		return fmt.Errorf("--modules: %s are the modules of kernel %s, but the image is %s: modules and kernel do not match", dir, t.Release, k.Release)
	}
	k.Modules = t
	return nil
}

func debModules(root, release string) string {
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		if p := filepath.Join(root, d, release); isDir(p) {
			return p
		}
	}
	return ""
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ImageRelease returns the release of an x86 bzImage, from the version
// string its setup header points to ("6.1.0-50-cloud-amd64 (debian-kernel@...)
// #1 SMP ..."). A file that is not a bzImage wraps ErrNotKernel.
func ImageRelease(image string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return "", ErrNotKernel
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	if binary.LittleEndian.Uint16(hdr[0x206:]) < 0x0200 || off <= 0x200 {
		return "", fmt.Errorf("%w: setup header without a kernel version", ErrNotKernel)
	}
	ver := make([]byte, 256)
	n, _ := f.ReadAt(ver, off)
	release, _, _ := strings.Cut(string(ver[:n]), " ")
	if release == "" || strings.ContainsAny(release, "\x00/") {
		return "", fmt.Errorf("%w: unreadable kernel version", ErrNotKernel)
	}
	return release, nil
}

// imageName names the image for a report: its path, or for a package the
// file in it (the unpacked copy is gone when the report is read).
func (k *Kernel) imageName() string {
	if k.Package != "" {
		return "boot/" + filepath.Base(k.Image)
	}
	return k.Image
}
