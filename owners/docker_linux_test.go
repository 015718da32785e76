//go:build linux

package owners

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dockerd is a Docker Engine running in a node's namespace.
type dockerd struct {
	n    *node
	cli  string // the docker CLI of the same package as dockerd
	sock string
	cmd  *exec.Cmd
}

func startDocker(t *testing.T, n *node) *dockerd {
	cli := "/usr/bin/docker"
	if _, err := os.Stat(cli); err != nil {
		cli = "docker"
	}
	d := &dockerd{n: n, cli: cli, sock: filepath.Join(n.dir, "docker.sock")}
	d.startDaemon(t)
	t.Cleanup(func() { d.docker(t, "rm", "-f", "web", "web2") })
	return d
}

func (d *dockerd) startDaemon(t *testing.T) {
	t.Helper()
	tag := filepath.Base(d.n.dir)
	d.cmd = d.n.start("dockerd", "--data-root", filepath.Join(d.n.dir, "data"), "--exec-root", filepath.Join(d.n.dir, "x"),
		"--pidfile", filepath.Join(d.n.dir, "docker.pid"), "-H", "unix://"+d.sock, "--userland-proxy=false",
		"--containerd-namespace", tag, "--containerd-plugins-namespace", tag+"p", "--shutdown-timeout", "2")
	waitFor(t, 60*time.Second, "dockerd answering", func() bool {
		return exec.Command(d.cli, "-H", "unix://"+d.sock, "info").Run() == nil
	})
}

// restart stops dockerd (its containers stop with it) and starts it again:
// it re-adds its rules and restarts the containers that ask for it.
func (d *dockerd) restart(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(os.Interrupt)
	waitFor(t, 30*time.Second, "dockerd stopping", func() bool { return d.cmd.ProcessState != nil })
	d.startDaemon(t)
}

// docker runs the docker CLI against this daemon.
func (d *dockerd) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(d.cli, append([]string{"-H", "unix://" + d.sock}, args...)...).CombinedOutput()
	if err != nil && args[0] != "rm" {
		t.Fatalf("docker %v: %v: %s\ndockerd log:\n%s", args, err, out, tailOf(d.n.logOf("dockerd"), 2000))
	}
	return strings.TrimSpace(string(out))
}

// importBusybox imports an image made here from busybox-static: no
// registry is reachable, nor needed.
func (d *dockerd) importBusybox(t *testing.T) {
	t.Helper()
	tarball := busyboxTar(t, d.n.dir)
	d.docker(t, "import", tarball, "snt-busybox:1")
}

// busyboxTar writes a root file system of busybox-static and a web page.
func busyboxTar(t *testing.T, dir string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	for _, p := range []string{"bin", "www"} {
		os.MkdirAll(filepath.Join(root, p), 0o755)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755)
	for _, a := range []string{"sh", "httpd", "sleep"} {
		os.Symlink("busybox", filepath.Join(root, "bin", a))
	}
	os.WriteFile(filepath.Join(root, "www", "index.html"), []byte("hello from a container\n"), 0o644)
	tarball := filepath.Join(dir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	return tarball
}

// published checks that a container's published port answers through
// Docker's DNAT.
func (d *dockerd) published(t *testing.T, port string) {
	t.Helper()
	var out string
	waitFor(t, 10*time.Second, "published port "+port+" answering", func() bool {
		o, err := exec.Command("nsenter", "--net="+d.n.ns.Path(), "curl", "-s", "-m", "2", "http://172.17.0.1:"+port+"/").Output()
		out = string(o)
		return err == nil
	})
	if out != "hello from a container\n" {
		t.Errorf("port %s answered %q", port, out)
	}
}

// TestDocker runs Debian's Docker Engine with the userland proxy off, a
// user-defined network with its own bridge name and a container with a
// published port, then audits, fixes, rolls back and watches its rules.
func TestDocker(t *testing.T) {
	n := newNode(t, "docker", "dockerd", "busybox", "curl")
	d := startDocker(t, n)
	d.importBusybox(t)
	d.docker(t, "network", "create", "-o", "com.docker.network.bridge.name=mybr0", "--subnet", "172.30.0.0/16", "mynet")
	d.docker(t, "run", "-d", "--restart", "always", "--name", "web", "-p", "8080:80", "snt-busybox:1", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	d.published(t, "8080")
	version := d.docker(t, "version", "--format", "{{.Server.Version}}")

	// audit: every source-NAT rule is Docker's, with evidence and its remedy.
	n.auditOwned("docker", 5, "Docker's 5", nil)
	recordDump(t, "docker-20.10.iptables-save", "Debian docker.io "+pkgVersion("docker.io")+", --userland-proxy=false, network mybr0, a published port", n.run("iptables-nft-save"))

	// fix --apply: exactly Docker's rules gain fully-random; rollback
	// restores the dump.
	fixed := n.fixAndRollback("docker", "iptables-nft-save", 5, func() { d.published(t, "8080") })

	// fix --apply --watch: Docker's rewrites are fixed again within 1 s.
	n.watch()
	n.waitFixed(5*time.Second, "the watch's first fix")
	react := map[string]time.Duration{}
	d.docker(t, "run", "-d", "--name", "web2", "-p", "8081:80", "snt-busybox:1", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
	react["new container, published port"] = n.waitFixed(time.Second, "fix after docker run -p")
	d.docker(t, "network", "create", "-o", "com.docker.network.bridge.name=mybr1", "--subnet", "172.31.0.0/16", "net2")
	react["new network"] = n.waitFixed(time.Second, "fix after docker network create")
	d.restart(t)
	react["dockerd restart"] = n.waitFixed(time.Second, "fix after the dockerd restart")
	d.published(t, "8080")
	t.Logf("Docker Engine %s: 5 rules attributed, 5 fixed; re-fixed after %v", version, react)
	recordOwner(t, ownerRow{Owner: "docker", Software: "Docker Engine (docker.io) " + version, Rules: 5, Attributed: 5, Fixed: fixed, Reactions: react})
}
