package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/xi2/xz"
)

// Info is what a module file says about itself.
type Info struct {
	// Name is the module's name (modinfo "name", else from the file name),
	// normalized (Normalize).
	Name string
	// Depends are the modules it needs loaded first, normalized.
	Depends []string
	// Aliases are the patterns (fnmatch) the kernel may ask for it by.
	Aliases []string
	// Vermagic is the kernel release and build options it was built for.
	Vermagic string
}

// Release returns the kernel release of Vermagic (its first word).
func (i Info) Release() string {
	if f := strings.Fields(i.Vermagic); len(f) > 0 {
		return f[0]
	}
	return ""
}

// Normalize spells a module name the way the kernel compares them: '-' and
// '_' are the same character.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleExts are the module file endings read, with their decompressors.
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// NameOf returns the module name of a module file name (nf_nat.ko.xz →
// nf_nat), and false for a file that is not a module.
func NameOf(path string) (string, bool) {
	base := filepath.Base(path)
	for _, ext := range moduleExts {
		if strings.HasSuffix(base, ext) {
			return Normalize(strings.TrimSuffix(base, ext)), true
		}
	}
	return "", false
}

// ReadFile returns the module at path, decompressed (.ko, .ko.xz, .ko.zst,
// .ko.gz).
func ReadFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	switch {
	case strings.HasSuffix(path, ".ko"):
		return raw, nil
	case strings.HasSuffix(path, ".ko.xz"):
		r, err = xz.NewReader(bytes.NewReader(raw), 0)
	case strings.HasSuffix(path, ".ko.zst"):
		var d *zstd.Decoder
		if d, err = zstd.NewReader(bytes.NewReader(raw)); err == nil {
			defer d.Close()
			r = d
		}
	case strings.HasSuffix(path, ".ko.gz"):
		r, err = gzip.NewReader(bytes.NewReader(raw))
	default:
		return nil, fmt.Errorf("%s: not a kernel module file (want %s)", path, strings.Join(moduleExts, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", path, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", path, err)
	}
	return b, nil
}

// ErrNotModule is returned for a file that is not a kernel module.
var ErrNotModule = errors.New("not a kernel module")

// ParseInfo reads the .modinfo section of a (decompressed) module. name is
// used when the section has no "name" entry (kernels before 4.x).
func ParseInfo(module []byte, name string) (Info, error) {
	f, err := elf.NewFile(bytes.NewReader(module))
	if err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrNotModule, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return Info{}, fmt.Errorf("%w: no .modinfo section", ErrNotModule)
	}
	data, err := sec.Data()
	if err != nil {
		return Info{}, fmt.Errorf("%w: reading .modinfo: %v", ErrNotModule, err)
	}
	info := Info{Name: Normalize(name)}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			info.Name = Normalize(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					info.Depends = append(info.Depends, Normalize(d))
				}
			}
		case "alias":
			info.Aliases = append(info.Aliases, v)
		case "vermagic":
			info.Vermagic = v
		}
	}
	if info.Name == "" {
		return Info{}, fmt.Errorf("%w: no name", ErrNotModule)
	}
	return info, nil
}
