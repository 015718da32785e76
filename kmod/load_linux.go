//go:build linux

package kmod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Load loads module (a name or an alias, as Resolve) and its dependencies,
// dependencies first, from the modules directory dir, as modprobe does.
// params go to the module itself, instead of its Options; dependencies get
// their Options. A module already loaded or built in is not an error. It
// needs CAP_SYS_MODULE.
func (x *Index) Load(dir, module, params string) error {
	name, builtin, err := x.Resolve(module)
	if err != nil || builtin {
		return err
	}
	order, err := x.LoadOrder(name)
	if err != nil {
		return err
	}
	for _, m := range order {
		p := x.Options[m]
		if m == name && params != "" {
			p = params
		}
		if err := loadOne(filepath.Join(dir, x.Modules[m].Path), m, p); err != nil {
			return err
		}
	}
	return nil
}

// loadOne loads one module. A module already live is skipped; one still
// coming up (another modprobe is loading it) is loaded again, so that the
// kernel makes this call wait until it is live and then says EEXIST: a
// caller that returned earlier would let the kernel look for the module's
// features before they are registered.
func loadOne(path, name, params string) error {
	if state, err := os.ReadFile(filepath.Join("/sys/module", name, "initstate")); err == nil && string(state) == "live\n" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("loading %s: %w", name, err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), params, 0)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return fmt.Errorf("loading %s (%s): %w", name, path, err)
}
