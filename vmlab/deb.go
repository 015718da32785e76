package vmlab

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/blakesmith/ar"
	"github.com/klauspost/compress/zstd"
	"github.com/xi2/xz"
)

// unpackDeb extracts the kernel image and modules of a Debian package into
// dir and returns the image's path. Only boot/vmlinuz-* and
// [usr/]lib/modules/ are extracted; paths that would leave dir are refused.
func unpackDeb(deb, dir string) (string, error) {
	f, err := os.Open(deb)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := ar.NewReader(f)
	for {
		hdr, err := r.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("--kernel: %s has no data.tar member: not a Debian package", deb)
		}
		if err != nil {
			return "", fmt.Errorf("--kernel: reading %s: %w", deb, err)
		}
		name := strings.TrimSuffix(strings.TrimSpace(hdr.Name), "/")
		if !strings.HasPrefix(name, "data.tar") {
			continue
		}
		tr, err := decompress(r, name)
		if err != nil {
			return "", fmt.Errorf("--kernel: %s: %w", deb, err)
		}
		image, err := extractKernel(tr, dir)
		if err != nil {
			return "", fmt.Errorf("--kernel: %s: %w", deb, err)
		}
		if image == "" {
			return "", fmt.Errorf("--kernel: %s holds no boot/vmlinuz-*: a meta-package? give the versioned linux-image package", deb)
		}
		return image, nil
	}
}

func decompress(r io.Reader, name string) (io.Reader, error) {
	switch path.Ext(name) {
	case ".xz":
		return xz.NewReader(r, 0)
	case ".zst":
		return zstd.NewReader(r)
	case ".gz":
		return gzip.NewReader(r)
	case ".tar":
		return r, nil
	}
	return nil, fmt.Errorf("member %s: unsupported compression", name)
}

// extractKernel writes the image and module files of a package's data tar
// under dir, and returns the image's path ("" if none).
func extractKernel(r io.Reader, dir string) (string, error) {
	tr := tar.NewReader(r)
	image := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return image, nil
		}
		if err != nil {
			return "", fmt.Errorf("reading data.tar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if !filepath.IsLocal(name) {
			return "", fmt.Errorf("refusing path %q outside the package root", hdr.Name)
		}
		isImage := strings.HasPrefix(name, "boot/vmlinuz-")
		if !isImage && !strings.HasPrefix(name, "lib/modules/") && !strings.HasPrefix(name, "usr/lib/modules/") {
			continue
		}
		dst := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			err = writeFile(dst, tr)
		default:
			continue // symlinks (build, source) are not needed
		}
		if err != nil {
			return "", err
		}
		if isImage && hdr.Typeflag == tar.TypeReg {
			image = dst
		}
	}
}

func writeFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
