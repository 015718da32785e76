//go:build !linux

package fix

import (
	"context"
	"errors"

	"github.com/snatrace/snatrace/ruleset"
)

// ErrNotLinux is returned by everything that needs the Linux kernel.
var ErrNotLinux = errors.New("snatrace fix changes Linux netfilter rules: not supported on this OS")

// Fixer plans, applies and rolls back fixes in one network namespace.
type Fixer struct{}

// New returns a Fixer whose every method fails: fixing needs Linux.
func New(Config) *Fixer { return &Fixer{} }

// Read fails: fixing needs Linux.
func (f *Fixer) Read(context.Context) (*ruleset.Ruleset, error) { return nil, ErrNotLinux }

// Plan fails: fixing needs Linux.
func (f *Fixer) Plan(context.Context) (*Plan, error) { return nil, ErrNotLinux }

// Apply fails: fixing needs Linux.
func (f *Fixer) Apply(context.Context, *Plan, string) (*Result, error) { return nil, ErrNotLinux }

// ApplySaved fails: fixing needs Linux.
func (f *Fixer) ApplySaved(context.Context, *Plan, string) (*Result, error) { return nil, ErrNotLinux }

// ApplyFresh fails: fixing needs Linux.
func (f *Fixer) ApplyFresh(context.Context, string, int) (*Plan, *Result, error) {
	return nil, nil, ErrNotLinux
}

// Rollback fails: fixing needs Linux.
func (f *Fixer) Rollback(context.Context, *Backup) (*RollbackResult, error) { return nil, ErrNotLinux }

// Watch fails: fixing needs Linux.
func (f *Fixer) Watch(context.Context, WatchOptions) error { return ErrNotLinux }
