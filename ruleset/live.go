package ruleset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"time"
)

// Runner runs the external iptables tools. It is the seam tests replace;
// ExecRunner is the real one.
type Runner interface {
	// Run runs name with args and returns its standard output.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	// LookPath reports whether name is installed (and where).
	LookPath(name string) (string, error)
}

// commandTimeout bounds each external command ExecRunner runs.
const commandTimeout = 60 * time.Second

// ExecRunner runs commands with os/exec, inside the network namespace named
// by NetNSPath (through nsenter --net) when it is set.
type ExecRunner struct {
	NetNSPath string
}

// Run implements Runner.
func (e ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmdArgs := append([]string{name}, args...)
	if e.NetNSPath != "" {
		cmdArgs = append([]string{"nsenter", "--net=" + e.NetNSPath, "--"}, cmdArgs...)
	}
	// A save of even a huge table takes seconds; never hang an audit on it.
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cmdArgs[0], cmdArgs[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := bytes.TrimSpace(stderr.Bytes())
		if len(msg) > 0 {
			return nil, fmt.Errorf("running %s: %w: %s", name, err, msg)
		}
		return nil, fmt.Errorf("running %s: %w", name, err)
	}
	return out, nil
}

// LookPath implements Runner.
func (e ExecRunner) LookPath(name string) (string, error) {
	if e.NetNSPath != "" {
		if _, err := exec.LookPath("nsenter"); err != nil {
			return "", fmt.Errorf("nsenter (util-linux) is needed to run %s in another namespace: %w", name, err)
		}
	}
	return exec.LookPath(name)
}

// ReadOptions says what Read reads.
type ReadOptions struct {
	// NetNSFd is an open file descriptor of the network namespace to read,
	// or 0 for the caller's own.
	NetNSFd int
	// Runner runs iptables-legacy-save and iptables-nft-save; nil means
	// ExecRunner in the caller's namespace (set ExecRunner.NetNSPath together
	// with NetNSFd to read another namespace).
	Runner Runner
	// SkipLegacy skips iptables-legacy (its rules are invisible to nftables).
	SkipLegacy bool
}

// ErrNoBackend is returned by Read when no backend could be read at all.
var ErrNoBackend = errors.New("no nftables access and no iptables-legacy-save")

var versionRe = regexp.MustCompile(`v(\d+\.\d+(?:\.\d+)?)`)

// IptablesVersion returns the version of the named iptables binary
// ("iptables", "iptables-legacy") as "1.8.9", or "" when it is not installed.
func IptablesVersion(ctx context.Context, run Runner, bin string) string {
	if run == nil {
		run = ExecRunner{}
	}
	if _, err := run.LookPath(bin); err != nil {
		return ""
	}
	out, err := run.Run(ctx, bin, "--version")
	if err != nil {
		return ""
	}
	if m := versionRe.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}
