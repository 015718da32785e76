// Package tool is the one seam through which snatrace runs userspace tools
// (iptables-save, iptables-restore, nft, and the software whose rules it
// audits), inside a network namespace or the caller's own.
//
// Runner is small on purpose (the model is knftables' execer): LookPath and
// Run. Exec is the real one; Fake records every call and answers the ones a
// test expects, so that code which runs tools is tested without root and
// without the tools. A missing binary is always a *MissingError naming the
// Debian package that provides it; a failed command an *ExitError carrying
// its exit status and standard error.
package tool

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Cmd is one command to run.
type Cmd struct {
	Name  string
	Args  []string
	Stdin string
	// Env is added to the process environment ("XTABLES_LOCKFILE=...").
	Env []string
}

// Command returns a Cmd for name and args.
func Command(name string, args ...string) Cmd { return Cmd{Name: name, Args: args} }

// WithStdin returns c with stdin as its input.
func (c Cmd) WithStdin(stdin string) Cmd { c.Stdin = stdin; return c }

// String returns the command line, for messages.
func (c Cmd) String() string { return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")) }

// Runner runs tools. Implementations are safe for concurrent use.
type Runner interface {
	// LookPath returns where name is installed, or a *MissingError.
	LookPath(name string) (string, error)
	// Run runs c to completion and returns its standard output. A binary
	// that is not installed is a *MissingError; a non-zero exit an
	// *ExitError.
	Run(ctx context.Context, c Cmd) ([]byte, error)
}

// MissingError says which userspace tool is not installed, and which package
// provides it.
type MissingError struct {
	Binary  string
	Package string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s not found in PATH (install the %s package)", e.Binary, e.Package)
}

// Missing returns the *MissingError for binary.
func Missing(binary string) *MissingError {
	return &MissingError{Binary: binary, Package: PackageOf(binary)}
}

// IsMissing reports whether err is, or wraps, a *MissingError.
func IsMissing(err error) bool {
	var m *MissingError
	return errors.As(err, &m)
}

// PackageOf names the Debian package that provides binary.
func PackageOf(binary string) string {
	switch {
	case strings.HasPrefix(binary, "iptables"), strings.HasPrefix(binary, "ip6tables"):
		return "iptables"
	case binary == "nft":
		return "nftables"
	case binary == "conntrack":
		return "conntrack"
	case binary == "nsenter", binary == "setpriv":
		return "util-linux"
	case binary == "dockerd", binary == "docker":
		return "docker.io"
	case binary == "virsh", binary == "libvirtd":
		return "libvirt-daemon-system"
	}
	return binary
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Cmd    string // the command line
	Code   int    // exit status; -1 when killed by a signal or the timeout
	Stderr string // its standard error, trimmed
	Err    error  // the os/exec error
}

func (e *ExitError) Error() string {
	if e.Stderr != "" {
		return fmt.Sprintf("running %s: %v: %s", e.Cmd, e.Err, e.Stderr)
	}
	return fmt.Sprintf("running %s: %v", e.Cmd, e.Err)
}

func (e *ExitError) Unwrap() error { return e.Err }
