//go:build linux

// Package podmantest runs Debian's Podman (rootful) for tests without
// touching the machine's own containers: storage (--root), run state
// (--runroot), temporary files, network configuration and events live under
// the test's directory, and a containers.conf (CONTAINERS_CONF) picks runc
// (crun rejects this machine's hybrid cgroup layout), cgroupfs and ulimits
// within the machine's hard limits. Podman runs in a given network
// namespace (nsenter --net, never `ip netns exec`, which remounts /sys), so
// a container on the host network lives in that namespace and netavark
// writes its rules there. Every container is removed, and the storage
// unmounted, when the test ends.
package podmantest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
)

// Podman is Podman with its state under one directory, run in one network
// namespace.
type Podman struct {
	ns   *netns.NS
	args []string // global options: storage and run state
	env  []string // CONTAINERS_CONF
}

// New returns a Podman keeping its state under dir (which the caller
// removes) and running in ns. It skips t (fails it in CI) without podman,
// runc or nsenter, and removes every container when t ends.
func New(t testing.TB, dir string, ns *netns.NS) *Podman {
	t.Helper()
	for _, b := range []string{"podman", "runc", "nsenter"} {
		if _, err := exec.LookPath(b); err != nil {
			testenv.Skip(t, "needs %s (.ci/run installs it)", b)
		}
	}
	conf := filepath.Join(dir, "containers.conf")
	body := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%s"
[network]
network_backend = "netavark"
network_config_dir = "%s"
`, filepath.Join(dir, "events.log"), filepath.Join(dir, "net"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Podman{ns: ns, env: []string{"CONTAINERS_CONF=" + conf},
		args: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp")}}
	t.Cleanup(func() {
		p.Exec("rm", "-f", "-a", "-t", "0")
		// conmon runs `podman container cleanup` when a container exits,
		// and that can mount the storage again after rm returned: wait
		// for the processes of this store (bounded) before unmounting.
		waitProcesses(dir, 10*time.Second)
		// The overlay driver bind-mounts its directory onto itself and
		// leaves it mounted: without this, dir cannot be removed.
		if err := unmountUnder(dir); err != nil {
			t.Errorf("unmounting podman's storage: %v", err)
		}
	})
	return p
}

// waitProcesses waits, at most d, until no process's command line names dir.
func waitProcesses(dir string, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		busy := false
		m, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, f := range m {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), dir) {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
	}
}

// unmountUnder unmounts every mount point at or under dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint ...
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", points[i], err)
		}
	}
	return nil
}

// Run runs podman with args and returns its trimmed output; it fails t
// with the output when podman fails.
func (p *Podman) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := p.Exec(args...)
	if err != nil {
		t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// Exec runs podman with args and returns its combined output.
func (p *Podman) Exec(args ...string) (string, error) {
	out, err := p.Command(args...).CombinedOutput()
	return string(out), err
}

// Command is the podman command line for args, to be started by the caller.
func (p *Podman) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + p.ns.Path(), "podman"}, append(p.args, args...)...)...)
	cmd.Env = append(os.Environ(), p.env...)
	return cmd
}

// Engine is the engine command and environment that deploy/image/build.sh
// takes (ENGINE=..., CONTAINERS_CONF=...), for this Podman's storage.
func (p *Podman) Engine() []string {
	return append([]string{"ENGINE=nsenter --net=" + p.ns.Path() + " podman " + strings.Join(p.args, " ")}, p.env...)
}
