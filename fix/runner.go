package fix

import (
	"context"
	"errors"
	"fmt"
)

// Runner runs the iptables tools; it is the seam tests replace.
type Runner interface {
	// Run runs name with args, stdin as its input, and returns its stdout.
	Run(ctx context.Context, stdin string, name string, args ...string) (string, error)
	// LookPath says where name is installed, or fails.
	LookPath(name string) (string, error)
}

// ErrStale is returned by Apply when the ruleset changed since the plan was
// made: nothing was changed, make a new plan.
var ErrStale = errors.New("the ruleset changed since the plan was made")

// MissingBinaryError names a userspace tool a change needs and is not
// installed. Apply checks every tool before it changes anything.
type MissingBinaryError struct {
	Binary  string
	Package string
}

func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("%s not found in PATH (install the %s package); nothing was changed", e.Binary, e.Package)
}

// binaries returns the save and restore tools of an iptables backend.
func binaries(b string, fam string) (save, restore string) {
	prefix := "iptables"
	if fam == "ip6" {
		prefix = "ip6tables"
	}
	flavour := "-legacy"
	if b == "iptables-nft" {
		flavour = "-nft"
	}
	return prefix + flavour + "-save", prefix + flavour + "-restore"
}
