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

// busConf is a private D-Bus system bus for one test's firewalld.
const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=BUS</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
`

// firewalld is a firewalld on a private system bus in a node's namespace,
// with its own (empty) system configuration: runtime changes only.
type firewalld struct {
	n   *node
	env []string
}

func startFirewalld(t *testing.T, n *node, backend string) *firewalld {
	t.Helper()
	bus := filepath.Join(n.dir, "bus")
	conf := filepath.Join(n.dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(strings.Replace(busConf, "BUS", bus, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start("dbus-daemon", "--config-file="+conf, "--nofork")
	waitFor(t, 10*time.Second, "the private D-Bus", func() bool { _, err := os.Stat(bus); return err == nil })
	f := &firewalld{n: n, env: []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + bus}}
	etc := filepath.Join(n.dir, "etc")
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "firewalld.conf"), []byte("DefaultZone=public\nFirewallBackend="+backend+"\n"), 0o644)
	n.startEnv(f.env, "firewalld", "--nofork", "--nopid", "--system-config", etc, "--log-target", "console")
	waitFor(t, 30*time.Second, "firewalld running", func() bool { return f.cmd(t, true, "--state") == "running" })
	return f
}

// cmd runs firewall-cmd against this firewalld.
func (f *firewalld) cmd(t *testing.T, quiet bool, args ...string) string {
	t.Helper()
	c := exec.Command("firewall-cmd", args...)
	c.Env = append(os.Environ(), f.env...)
	out, err := c.CombinedOutput()
	if err != nil && !quiet {
		t.Fatalf("firewall-cmd %v: %v: %s\nfirewalld log:\n%s", args, err, out, tailOf(f.n.logOf("firewalld"), 2000))
	}
	return strings.TrimSpace(string(out))
}

// TestFirewalld runs Debian's firewalld, with each of its backends, with
// masquerade on a zone, then audits, fixes, rolls back and watches its rules
// through a reload and a second zone.
func TestFirewalld(t *testing.T) {
	for _, b := range []struct{ backend, table, chain, section string }{
		{"nftables", "firewalld", "nat_POST_public_allow", "nft --stateless list ruleset"},
		{"iptables", "nat", "POST_public_allow", "iptables-nft-save"},
	} {
		t.Run(b.backend, func(t *testing.T) { testFirewalld(t, b.backend, b.table, b.chain, b.section) })
	}
}

func testFirewalld(t *testing.T, backend, table, chain, section string) {
	n := newNode(t, "firewalld", "firewalld", "firewall-cmd", "dbus-daemon")
	f := startFirewalld(t, n, backend)
	f.cmd(t, false, "--zone=public", "--add-masquerade")
	version := pkgVersion("firewalld")

	n.auditOwned("firewalld", 1, "the public zone's masquerade", func(r auditedRule) bool { return r.Table == table && r.Chain == chain })
	if backend == "nftables" {
		recordDump(t, "firewalld.nft", "Debian firewalld "+version+", nftables backend, zone public --add-masquerade", n.run("nft", "list", "ruleset"))
	} else {
		recordDump(t, "firewalld-iptables.iptables-save", "Debian firewalld "+version+", iptables backend, zone public --add-masquerade", n.run("iptables-nft-save"))
	}

	fixed := n.fixAndRollback("firewalld", section, 1, func() {
		if f.cmd(t, false, "--zone=public", "--query-masquerade") != "yes" {
			t.Error("firewalld no longer reports the zone's masquerade")
		}
	})

	n.watch()
	n.waitFixed(5*time.Second, "the watch's first fix")
	react := map[string]time.Duration{}
	f.cmd(t, false, "--reload")
	f.cmd(t, false, "--zone=public", "--add-masquerade") // a reload drops runtime changes
	react["firewall-cmd --reload, --add-masquerade"] = n.waitFixed(time.Second, "fix after a reload")
	f.cmd(t, false, "--zone=work", "--add-masquerade")
	react["masquerade on a second zone"] = n.waitFixed(time.Second, "fix after a second zone's masquerade")
	t.Logf("firewalld %s (%s): 1 rule attributed, %d fixed; re-fixed after %v", version, backend, fixed, react)
	recordOwner(t, ownerRow{Owner: "firewalld", Software: "firewalld " + version + " (" + backend + " backend)", Rules: 1, Attributed: 1,
		Fixed: fixed, Reactions: react})
}
