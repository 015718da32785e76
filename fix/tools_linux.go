//go:build linux

package fix

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
)

// tools returns the save and restore tools of an iptables backend and
// family: natrule.Tools for iptables-nft, natrule.LegacyTools (which falls
// back to the plain names of iptables before 1.8) for iptables-legacy. A
// missing tool is a *tool.MissingError.
func (f *Fixer) tools(ctx context.Context, b ruleset.Backend, fam ruleset.Family) (save, restore string, err error) {
	save, restore, ok := natrule.Tools(b, fam)
	if !ok {
		return "", "", fmt.Errorf("backend %s has no iptables tools", b)
	}
	if b == natrule.IptablesLegacy {
		save, restore = natrule.LegacyTools(ctx, f.run, fam)
	}
	for _, bin := range []string{save, restore} {
		if _, err := f.run.LookPath(bin); err != nil {
			return "", "", tool.Missing(bin)
		}
	}
	return save, restore, nil
}

// checkTools fails with a *tool.MissingError, before anything changes, when a
// tool one of the groups needs is not installed. A group changed through
// the kernel interface needs none (ip6tables-legacy rules are read and
// changed that way on a host that has only iptables-legacy's tools).
func (f *Fixer) checkTools(ctx context.Context, groups []*restoreGroup) error {
	for _, g := range groups {
		if f.direct(ctx, g) {
			continue
		}
		if _, _, err := f.tools(ctx, g.backend, g.family); err != nil {
			return err
		}
	}
	return nil
}

// canHoldLock reports whether fix can hold the xtables lock while it runs
// the legacy restore tools of fams: they must honour XTABLES_LOCKFILE
// (iptables 1.8.6 and later), or they would wait for the lock fix holds.
// Older tools get the checksum check alone. Each family's tool is asked
// once per Fixer, the families not yet asked all at once.
func (f *Fixer) canHoldLock(ctx context.Context, fams []ruleset.Family) bool {
	if len(fams) == 0 {
		return false
	}
	f.lockfileMu.Lock()
	defer f.lockfileMu.Unlock()
	if f.lockfile == nil {
		f.lockfile = map[ruleset.Family]bool{}
	}
	got := map[ruleset.Family]bool{}
	var ask []ruleset.Family
	for _, fam := range fams {
		if h, ok := f.lockfile[fam]; ok {
			got[fam] = h
		} else if !slices.Contains(ask, fam) {
			ask = append(ask, fam)
		}
	}
	honours, known := make([]bool, len(ask)), make([]bool, len(ask))
	var wg sync.WaitGroup
	for i, fam := range ask {
		wg.Go(func() { honours[i], known[i] = f.honoursLockfile(ctx, fam) })
	}
	wg.Wait()
	for i, fam := range ask {
		got[fam] = honours[i]
		if known[i] {
			f.lockfile[fam] = honours[i]
		}
	}
	for _, fam := range fams {
		if !got[fam] {
			return false
		}
	}
	return true
}

// honoursLockfile reports whether fam's legacy restore tool is installed
// and honours XTABLES_LOCKFILE (iptables 1.8.6 and later), and whether
// that is known: a tool that is not installed is known not to (for the
// Fixer's life: installing iptables under a running watch takes a
// restart), one that ran but printed no version (it failed, or the
// context ended) is asked again next time.
func (f *Fixer) honoursLockfile(ctx context.Context, fam ruleset.Family) (honours, known bool) {
	_, restore, err := f.tools(ctx, natrule.IptablesLegacy, fam)
	if err != nil {
		return false, true
	}
	v, err := kernel.ParseVersion(ruleset.IptablesVersion(ctx, f.run, restore))
	if err != nil {
		return false, false
	}
	return !v.Less(kernel.Version{Major: 1, Minor: 8, Patch: 6}), true
}

// lockLegacy takes the xtables lock when changes of groups go to
// iptables-legacy and the tools allow it (canHoldLock): no iptables-legacy
// writer can then move the rules between the check and the "-R N". It
// returns the release (a no-op when no lock was taken) and whether the lock
// is held: a commit through the kernel interface needs it (it runs no tool
// that would take it).
func (f *Fixer) lockLegacy(ctx context.Context, groups []*restoreGroup) (unlock func(), held bool, err error) {
	var tooled []ruleset.Family // families whose tools fix may run
	legacy := false
	for _, g := range groups {
		if g.backend != natrule.IptablesLegacy {
			continue
		}
		legacy = true
		if _, _, err := f.tools(ctx, g.backend, g.family); err == nil || !f.direct(ctx, g) {
			tooled = append(tooled, g.family)
		}
	}
	// A family changed only through the kernel interface, its tools not
	// installed, runs no tool that could wait for the lock.
	if !legacy || len(tooled) > 0 && !f.canHoldLock(ctx, tooled) {
		return func() {}, false, nil
	}
	unlock, err = lockXtables(ctx, f.lockPath())
	return unlock, err == nil, err
}

// lockXtables takes the xtables lock (flock on path, as iptables does),
// waiting at most 10 s, and returns its release.
func lockXtables(ctx context.Context, path string) (func(), error) {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_RDONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the xtables lock %s: %w", path, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return nil, fmt.Errorf("taking the xtables lock %s: %w", path, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("taking the xtables lock %s: another process has held it for 10 s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
