//go:build linux

package owners

import (
	"os/exec"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/podmantest"
)

// podman is Podman with its state under the node's directory, run in the
// node's namespace: netavark writes its rules where podman runs.
type podman struct {
	*podmantest.Podman
	n *node
}

func newPodman(t *testing.T, n *node) *podman {
	t.Helper()
	p := &podman{Podman: podmantest.New(t, n.dir, n.ns), n: n}
	t.Cleanup(func() { p.Exec("network", "rm", "-f", "mynet") })
	return p
}

func (p *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	return p.Run(t, args...)
}

// published checks that a host port answers through netavark's DNAT.
func (p *podman) published(t *testing.T, port string) {
	t.Helper()
	var out []byte
	waitFor(t, 10*time.Second, "published port "+port+" answering", func() bool {
		var err error
		out, err = exec.Command("nsenter", "--net="+p.n.ns.Path(), "curl", "-s", "-m", "2", "http://10.88.0.1:"+port+"/").Output()
		return err == nil
	})
	if string(out) != "hello from a container\n" {
		t.Errorf("port %s answered %q", port, out)
	}
}

// TestPodman runs Debian's Podman with netavark: the default network, a
// container with a published port, then a user network; audits, fixes, rolls
// back and watches the rules netavark writes.
func TestPodman(t *testing.T) {
	n := newNode(t, "podman", "podman", "busybox", "curl", "runc")
	n.run("ip", "link", "set", "lo", "up")
	p := newPodman(t, n)
	p.run(t, "import", busyboxTar(t, n.dir), "localhost/snt-busybox:1")
	p.run(t, "run", "-d", "--name", "web", "-p", "8080:80", "localhost/snt-busybox:1", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	p.published(t, "8080")
	version := pkgVersion("podman") + ", netavark " + pkgVersion("netavark")

	n.auditOwned("netavark", 2, "netavark's 2 (network, port forwarding)", nil)
	recordDump(t, "netavark-1.4.iptables-save", "Debian podman "+version+", default network, a published port", n.run("iptables-nft-save"))

	fixed := n.fixAndRollback("netavark", "iptables-nft-save", 2, func() { p.published(t, "8080") })

	n.watch()
	n.waitFixed(5*time.Second, "the watch's first fix")
	react := map[string]time.Duration{}
	p.run(t, "network", "create", "--subnet", "10.89.7.0/24", "mynet")
	p.run(t, "run", "-d", "--name", "web2", "--network", "mynet", "-p", "8081:80", "localhost/snt-busybox:1", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	react["user network, container with a published port"] = n.waitFixed(time.Second, "fix after a user network's container")
	p.run(t, "rm", "-f", "-t", "0", "web")
	p.run(t, "run", "-d", "--name", "web", "-p", "8080:80", "localhost/snt-busybox:1", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	react["container re-created on the default network"] = n.waitFixed(time.Second, "fix after re-creating a container")
	p.published(t, "8080")
	t.Logf("Podman %s: 2 rules attributed, %d fixed; re-fixed after %v", version, fixed, react)
	recordOwner(t, ownerRow{Owner: "netavark", Software: "Podman " + version, Rules: 2, Attributed: 2, Fixed: fixed, Reactions: react})
}
