//go:build linux

package ctstat

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

var record = flag.Bool("record", false, "record testdata/netlink-6.18.* from a fresh namespace (root)")

// enterFreshNS creates a named network namespace snt-ctstat-*, moves the
// calling goroutine's locked OS thread into it and returns its handle. The
// thread goes back to its original namespace, and the namespace is deleted,
// when the test ends; if the thread cannot go back it is left locked, so the
// runtime discards it with the goroutine.
func enterFreshNS(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace (CAP_SYS_ADMIN) and reads ctnetlink (CAP_NET_ADMIN)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("getting current namespace: %v", err)
	}
	name := fmt.Sprintf("snt-ctstat-%d", os.Getpid())
	ns, err := netns.NewNamed(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	t.Cleanup(func() {
		// Runs first (LIFO), on the test goroutine, still locked.
		if err := netns.Set(orig); err != nil {
			t.Errorf("restoring namespace: %v (thread left locked)", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	return name, ns
}

func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestFreshNamespaceProcAndNetlinkAgree reads both sources in a fresh
// namespace before and after refused connections on lo, and checks them against
// each other, against conntrack -S / -C, and against the CPUs of the machine.
func TestFreshNamespaceProcAndNetlinkAgree(t *testing.T) {
	name, ns := enterFreshNS(t)
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
	run(t, "", "ip", "-n", name, "link", "set", "lo", "up")
	// Conntrack hooks a namespace only once a rule needs it.
	run(t, "table inet snt {\n chain out {\n  type filter hook output priority 0; ct state new counter\n }\n}\n",
		"ip", "netns", "exec", name, "nft", "-f", "-")

	read := func() (Snapshot, Snapshot, Snapshot) {
		t.Helper()
		p, err := ReadProc(ProcPath)
		if err != nil {
			t.Fatal(err)
		}
		n0, err := ReadNetlink(0)
		if err != nil {
			t.Fatal(err)
		}
		nfd, err := ReadNetlink(int(ns))
		if err != nil {
			t.Fatal(err)
		}
		return p, n0, nfd
	}
	before, _, _ := read()

	// Open connections on lo: each is one ESTABLISHED entry while it lasts. (A
	// refused connection leaves none: the RST kills the unassured entry.)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const conns = 5
	d := net.Dialer{Timeout: 2 * time.Second}
	for range conns {
		c, err := d.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatalf("connecting to %s: %v", l.Addr(), err)
		}
		defer c.Close()
	}

	proc, nl, nlfd := read()
	if proc.Entries < before.Entries+conns {
		t.Errorf("entries %d -> %d after %d connections", before.Entries, proc.Entries, conns)
	}
	possible := possibleCPUs(t)
	for _, s := range []Snapshot{proc, nl, nlfd} {
		if len(s.CPUs) != possible {
			t.Errorf("%s: %d CPUs, machine has %d possible", s.Source, len(s.CPUs), possible)
		}
	}
	// No traffic between the reads: every counter of every CPU agrees.
	for _, n := range []Snapshot{nl, nlfd} {
		if n.Entries != proc.Entries || n.Max == 0 {
			t.Errorf("entries: netlink %d (max %d), proc %d", n.Entries, n.Max, proc.Entries)
		}
		if fmt.Sprint(n.CPUs) != fmt.Sprint(proc.CPUs) {
			t.Errorf("per-CPU counters differ:\nnetlink %+v\nproc    %+v", n.CPUs, proc.CPUs)
		}
	}
	if tot := Delta(before, proc).Total(); tot.InsertFailed != 0 || tot.Drop != 0 {
		t.Errorf("refused connections on lo counted insert_failed %d drop %d", tot.InsertFailed, tot.Drop)
	}

	maxProc, err := ReadMax("")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ReadNetlinkGlobal(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	if g.Max != maxProc || g.Entries != proc.Entries || nl.Max != maxProc {
		t.Errorf("netlink global %+v; proc max %d entries %d", g, maxProc, proc.Entries)
	}

	if _, err := exec.LookPath("conntrack"); err == nil {
		out := run(t, "", "ip", "netns", "exec", name, "conntrack", "-S")
		if got, want := conntrackS(nl.CPUs), normalizeS(out); got != want {
			t.Errorf("ReadNetlink\n%s\nconntrack -S\n%s", got, want)
		}
	}
	if *record {
		recordNetlink(t, name, ns)
	}
}

// normalizeS turns conntrack -S output into conntrackS's format.
func normalizeS(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		b.WriteString(strings.Join(strings.Fields(l), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

func recordNetlink(t *testing.T, name string, ns netns.NsHandle) {
	c, err := dial(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs, err := queryStatsCPU(c)
	if err != nil {
		t.Fatal(err)
	}
	var hexOut bytes.Buffer
	fmt.Fprintf(&hexOut, "# IPCTNL_MSG_CT_GET_STATS_CPU replies, Linux %s, one raw netlink message per line\n", kernelRelease(t))
	for _, m := range msgs {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		hexOut.WriteString(hex.EncodeToString(b) + "\n")
	}
	out := run(t, "", "ip", "netns", "exec", name, "conntrack", "-S")
	if err := os.WriteFile("testdata/netlink-6.18.hex", hexOut.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/netlink-6.18.conntrack-S.txt", []byte(normalizeS(out)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func kernelRelease(t *testing.T) string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// possibleCPUs counts /sys/devices/system/cpu/possible ("0-1", "0,2-3").
func possibleCPUs(t *testing.T) int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		var lo, hi int
		if _, err := fmt.Sscanf(r, "%d-%d", &lo, &hi); err != nil {
			if _, err := fmt.Sscanf(r, "%d", &lo); err != nil {
				t.Fatalf("parsing possible CPUs %q: %v", b, err)
			}
			hi = lo
		}
		n += hi - lo + 1
	}
	return n
}
