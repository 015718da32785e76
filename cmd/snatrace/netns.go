package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/snatrace/snatrace/netns"
)

// netnsHelp is the --netns flag text every job shares.
const netnsHelp = "a network namespace: NAME (under /run/netns), PATH (/proc/PID/ns/net), pid:PID, or its inode number"

// openNetNS opens the namespace of a --netns flag: nil for "" (the caller's
// own). A spec that does not parse or name a namespace is a usage error; a
// missing privilege an environment error.
func openNetNS(spec string) (*netns.NS, error) {
	if spec == "" {
		return nil, nil
	}
	ns, err := netns.Open(spec)
	switch {
	case err == nil:
		return ns, nil
	case errors.Is(err, os.ErrPermission):
		return nil, envErr(fmt.Errorf("--netns %s: %w (needs root)", spec, err))
	}
	return nil, usageErr("--netns %s: %w", spec, err)
}
