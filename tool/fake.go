package tool

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Fake is a Runner for tests: it answers the commands it expects, in order,
// and records every call. A command it does not expect is an error that names
// it, so a test sees exactly which commands the code ran.
type Fake struct {
	// Installed lists the binaries LookPath finds; nil means every binary
	// named in Expected.
	Installed []string
	// Expected are the commands to answer, in the order they must come.
	Expected []Call

	mu    sync.Mutex
	calls []Cmd
}

// Call is one expected command and its answer.
type Call struct {
	Cmd Cmd
	// AnyStdin skips the comparison of Cmd.Stdin.
	AnyStdin bool
	Stdout   string
	Err      error
}

var _ Runner = (*Fake)(nil)

// LookPath implements Runner.
func (f *Fake) LookPath(name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.installed(name) {
		return "/usr/sbin/" + name, nil
	}
	return "", Missing(name)
}

func (f *Fake) installed(name string) bool {
	if f.Installed != nil {
		return slices.Contains(f.Installed, name)
	}
	for _, c := range f.Expected {
		if c.Cmd.Name == name {
			return true
		}
	}
	return false
}

// Run implements Runner: it records c, checks it against the next expected
// call and returns that call's answer.
func (f *Fake) Run(_ context.Context, c Cmd) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if !f.installed(c.Name) {
		return nil, Missing(c.Name)
	}
	n := len(f.calls) - 1
	if n >= len(f.Expected) {
		return nil, fmt.Errorf("fake: unexpected command %d: %s", n+1, c)
	}
	want := f.Expected[n]
	if want.Cmd.String() != c.String() || !slices.Equal(want.Cmd.Env, c.Env) || (!want.AnyStdin && want.Cmd.Stdin != c.Stdin) {
		return nil, fmt.Errorf("fake: command %d is %s (stdin %q), want %s (stdin %q)", n+1, c, c.Stdin, want.Cmd, want.Cmd.Stdin)
	}
	return []byte(want.Stdout), want.Err
}

// Calls returns every command run so far.
func (f *Fake) Calls() []Cmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Unmet returns an error naming the expected commands that did not run.
func (f *Fake) Unmet() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) >= len(f.Expected) {
		return nil
	}
	return fmt.Errorf("fake: %d expected commands did not run, first %s", len(f.Expected)-len(f.calls), f.Expected[len(f.calls)].Cmd)
}

// Without is a Runner for tests: Runner on a host where the binaries
// Hidden reports are not installed — LookPath and Run answer them with a
// *MissingError, and run every other binary through Runner.
type Without struct {
	Runner
	Hidden func(name string) bool
}

// LookPath implements Runner.
func (w Without) LookPath(name string) (string, error) {
	if w.Hidden(name) {
		return "", Missing(name)
	}
	return w.Runner.LookPath(name)
}

// Run implements Runner.
func (w Without) Run(ctx context.Context, c Cmd) ([]byte, error) {
	if w.Hidden(c.Name) {
		return nil, Missing(c.Name)
	}
	return w.Runner.Run(ctx, c)
}

// Recorder is a Runner for tests: Runner, with every command Run is asked
// to run recorded, in order. It is safe for concurrent use.
type Recorder struct {
	Runner
	mu   sync.Mutex
	cmds []string
}

// Run implements Runner.
func (r *Recorder) Run(ctx context.Context, c Cmd) ([]byte, error) {
	r.mu.Lock()
	r.cmds = append(r.cmds, c.String())
	r.mu.Unlock()
	return r.Runner.Run(ctx, c)
}

// Ran returns the commands run so far, as Cmd.String prints them.
func (r *Recorder) Ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cmds)
}
