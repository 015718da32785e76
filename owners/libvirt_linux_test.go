//go:build linux

package owners

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// libvirtd runs in the node's network namespace and in a private mount
// namespace whose /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
// /var/log/libvirt and /etc/libvirt are empty tmpfs: nothing of the host's
// libvirt is read or written. Its socket is in the node's directory.
type libvirtd struct {
	n    *node
	uri  string
	nets []string
}

func startLibvirtd(t *testing.T, n *node) *libvirtd {
	t.Helper()
	sock := filepath.Join(n.dir, "sock")
	os.MkdirAll(sock, 0o755)
	conf := filepath.Join(n.dir, "libvirtd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("unix_sock_dir = %q\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n", sock)), 0o644)
	script := "for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do " +
		"mkdir -p $d && mount -t tmpfs snt-libvirt $d || exit 1; done; exec libvirtd -f " + conf
	n.start("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	l := &libvirtd{n: n, uri: "qemu:///system?socket=" + filepath.Join(sock, "libvirt-sock")}
	waitFor(t, 30*time.Second, "libvirtd answering", func() bool { return exec.Command("virsh", "-c", l.uri, "version").Run() == nil })
	// Networks are destroyed before libvirtd stops: that stops their dnsmasq.
	t.Cleanup(func() {
		for _, name := range l.nets {
			exec.Command("virsh", "-c", l.uri, "net-destroy", name).Run()
		}
		killMatching(t, "dnsmasq", filepath.Base(n.dir))
	})
	return l
}

// virsh runs virsh against this libvirtd.
func (l *libvirtd) virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", l.uri}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %v: %v: %s\nlibvirtd log:\n%s", args, err, out, tailOf(l.n.logOf("unshare"), 2000))
	}
	return strings.TrimSpace(string(out))
}

// netCreate starts a transient NAT network like libvirt's default one.
func (l *libvirtd) netCreate(t *testing.T, name, bridge, prefix string) {
	t.Helper()
	xml := fmt.Sprintf(`<network><name>%s</name><forward mode='nat'/><bridge name='%s' stp='on' delay='0'/>
<ip address='%s.1' netmask='255.255.255.0'><dhcp><range start='%s.2' end='%s.254'/></dhcp></ip></network>`, name, bridge, prefix, prefix, prefix)
	file := filepath.Join(l.n.dir, name+".xml")
	os.WriteFile(file, []byte(xml), 0o644)
	l.virsh(t, "net-create", file)
	l.nets = append(l.nets, name)
}

// killMatching ends the processes whose command line names both prog and
// tag (a test's own daemons' children), by PID.
func killMatching(t *testing.T, prog, tag string) {
	m, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), prog) || !strings.Contains(string(b), tag) {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
		syscall.Kill(pid, syscall.SIGTERM)
	}
}

// TestLibvirt runs Debian's libvirtd with a NAT network like its default
// one (started with virsh, no VM needed), then audits, fixes, rolls back and
// watches its rules through a network restart and a second network.
func TestLibvirt(t *testing.T) {
	n := newNode(t, "libvirt", "libvirtd", "virsh", "dnsmasq", "unshare")
	l := startLibvirtd(t, n)
	tag := strings.TrimPrefix(filepath.Base(n.dir), "snt-")
	name := "snt-" + tag
	l.netCreate(t, name, "virbr9", "192.168.122")
	version := pkgVersion("libvirt-daemon")

	doc := n.auditOwned("libvirt", 3, "the network's 3 (tcp, udp, other)", func(r auditedRule) bool { return r.Chain == "LIBVIRT_PRT" })
	// libvirt's tcp and udp rules map onto --to-ports 1024-65535: they remap
	// the ports below 1024, a PAWS cost where the kernel's timestamp offsets
	// are per port (6.18 here: probed by the audit).
	paws, want := 0, 0
	if doc.TSOffsets.Kind == "per-port" {
		want = 2
	}
	for _, f := range doc.Findings {
		if f.Kind == "paws-timewait" {
			paws++
		}
	}
	if paws != want {
		t.Errorf("%d paws-timewait findings, want %d (timestamp offsets %q; the tcp and udp rules' --to-ports 1024-65535)", paws, want, doc.TSOffsets.Kind)
	}
	recordDump(t, "libvirt-9.0.iptables-save", "Debian libvirt-daemon "+version+", a NAT network like the default one", n.run("iptables-nft-save"))

	fixed := n.fixAndRollback("libvirt", "iptables-nft-save", 3, func() {
		if !strings.Contains(l.virsh(t, "net-list"), name) {
			t.Error("the network is no longer listed after the fix")
		}
	})

	n.watch()
	n.waitFixed(5*time.Second, "the watch's first fix")
	react := map[string]time.Duration{}
	l.virsh(t, "net-destroy", name)
	l.nets = l.nets[:0]
	l.netCreate(t, name, "virbr9", "192.168.122")
	react["network restarted (net-destroy, net-create)"] = n.waitFixed(time.Second, "fix after the network restarted")
	l.netCreate(t, name+"b", "virbr8", "192.168.123")
	react["second network"] = n.waitFixed(time.Second, "fix after a second network")
	t.Logf("libvirt %s: 3 rules attributed, %d fixed, %d paws-timewait (offsets %s); re-fixed after %v", version, fixed, paws, doc.TSOffsets.Kind, react)
	recordOwner(t, ownerRow{Owner: "libvirt", Software: "libvirt " + version, Rules: 3, Attributed: 3, Fixed: fixed, Reactions: react})
}
