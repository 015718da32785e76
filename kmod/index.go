package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Index is the part of a kernel's modules a guest image carries: each
// module's file and dependencies, the aliases the kernel may ask for, and the
// modules built into the kernel image. It is what depmod's modules.dep,
// modules.alias and modules.builtin say, in one JSON document.
type Index struct {
	Release string            `json:"release"`
	Modules map[string]Module `json:"modules"`
	Aliases []Alias           `json:"aliases"`
	Builtin []string          `json:"builtin"`
	// Options are parameters given to a module when it is loaded without
	// any, as modprobe.d's "options" lines.
	Options map[string]string `json:"options,omitempty"`
}

// Module is one module of an Index.
type Module struct {
	// Path is the decompressed module file, relative to the modules
	// directory (kernel/net/netfilter/nf_nat.ko).
	Path    string   `json:"path"`
	Depends []string `json:"depends,omitempty"`
}

// Alias maps a pattern (fnmatch, as modules.alias) to a module.
type Alias struct {
	Pattern string `json:"pattern"`
	Module  string `json:"module"`
}

// ErrUnknown is returned for a name no module, alias or built-in answers.
var ErrUnknown = errors.New("no such module")

// Resolve returns the module that answers name: a module of that name, else
// the first whose alias matches. builtin is true when the kernel has it built
// in (nothing to load).
func (x *Index) Resolve(name string) (module string, builtin bool, err error) {
	n := Normalize(name)
	if _, ok := x.Modules[n]; ok {
		return n, false, nil
	}
	for _, b := range x.Builtin {
		if b == n {
			return n, true, nil
		}
	}
	for _, a := range x.Aliases {
		if ok, _ := path.Match(Normalize(a.Pattern), n); ok {
			return a.Module, false, nil
		}
	}
	return "", false, fmt.Errorf("%s: %w in %s", name, ErrUnknown, x.Release)
}

// LoadOrder returns module and its dependencies, dependencies first, each
// once.
func (x *Index) LoadOrder(module string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var visit func(string, []string) error
	visit = func(m string, stack []string) error {
		if seen[m] {
			return nil
		}
		mod, ok := x.Modules[m]
		if !ok {
			if x.isBuiltin(m) {
				seen[m] = true
				return nil
			}
			return fmt.Errorf("%s (needed by %s): %w in %s", m, strings.Join(stack, " ← "), ErrUnknown, x.Release)
		}
		seen[m] = true
		for _, d := range mod.Depends {
			if err := visit(d, append(stack, m)); err != nil {
				return err
			}
		}
		order = append(order, m)
		return nil
	}
	return order, visit(module, nil)
}

func (x *Index) isBuiltin(m string) bool {
	for _, b := range x.Builtin {
		if b == m {
			return true
		}
	}
	return false
}

// Tree is a kernel's modules directory on disk (lib/modules/RELEASE).
type Tree struct {
	Dir     string
	Release string
	files   map[string]string // module name → path relative to Dir
	builtin []string
}

// OpenTree lists the module files under dir and reads its modules.builtin.
// The release is dir's base name.
func OpenTree(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, Release: filepath.Base(dir), files: map[string]string{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := NameOf(p); ok && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			if _, dup := t.files[name]; !dup || strings.HasPrefix(rel, "updates/") {
				t.files[name] = rel
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading modules %s: %w", dir, err)
	}
	t.builtin, err = readBuiltin(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	if len(t.files) == 0 && len(t.builtin) == 0 {
		return nil, fmt.Errorf("%s holds no kernel modules and no modules.builtin", dir)
	}
	return t, nil
}

// readBuiltin reads modules.builtin (one path per line); a missing file is
// no built-ins.
func readBuiltin(p string) ([]string, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := NameOf(sc.Text()); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, sc.Err()
}

// Has reports whether the tree has module name, as a file or built in.
func (t *Tree) Has(name string) bool {
	n := Normalize(name)
	if _, ok := t.files[n]; ok {
		return true
	}
	i := sort.SearchStrings(t.builtin, n)
	return i < len(t.builtin) && t.builtin[i] == n
}

// Under returns the names of the modules whose files lie under the given
// directories, or are the given files (relative to the tree:
// "kernel/net/netfilter", "kernel/drivers/net/veth.ko").
func (t *Tree) Under(dirs ...string) []string {
	var names []string
	for name, rel := range t.files {
		for _, d := range dirs {
			d = strings.TrimSuffix(d, "/")
			if rel == d || strings.HasPrefix(rel, d+".") || strings.HasPrefix(rel, d+"/") {
				names = append(names, name)
				break
			}
		}
	}
	sort.Strings(names)
	return names
}

// Closure reads roots and every module they depend on, and returns their
// Index and decompressed contents by module name. A module built for another
// kernel release than the tree's (vermagic) is an error.
func (t *Tree) Closure(roots []string) (*Index, map[string][]byte, error) {
	x := &Index{Release: t.Release, Modules: map[string]Module{}, Builtin: t.builtin}
	data := map[string][]byte{}
	queue := append([]string(nil), roots...)
	for len(queue) > 0 {
		name := Normalize(queue[0])
		queue = queue[1:]
		if _, done := x.Modules[name]; done || t.Has(name) && x.isBuiltin(name) {
			continue
		}
		rel, ok := t.files[name]
		if !ok {
			return nil, nil, fmt.Errorf("module %s: %w in %s", name, ErrUnknown, t.Dir)
		}
		b, err := ReadFile(filepath.Join(t.Dir, rel))
		if err != nil {
			return nil, nil, err
		}
		info, err := ParseInfo(b, name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", rel, err)
		}
		if r := info.Release(); r != t.Release {
			return nil, nil, fmt.Errorf("%s was built for kernel %s, not %s: modules and kernel do not match", rel, r, t.Release)
		}
		ko := strings.TrimSuffix(rel, filepath.Ext(rel))
		if !strings.HasSuffix(ko, ".ko") {
			ko = rel
		}
		x.Modules[name] = Module{Path: ko, Depends: info.Depends}
		data[name] = b
		for _, a := range info.Aliases {
			x.Aliases = append(x.Aliases, Alias{Pattern: a, Module: name})
		}
		queue = append(queue, info.Depends...)
	}
	sort.Slice(x.Aliases, func(i, j int) bool { return x.Aliases[i].Module < x.Aliases[j].Module })
	return x, data, nil
}
