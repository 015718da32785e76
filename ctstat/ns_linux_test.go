//go:build linux

package ctstat

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

var record = flag.Bool("record", false, "record testdata/netlink-6.18.* from a fresh namespace (root)")

// freshNS is a throwaway namespace that conntrack tracks.
func freshNS(t *testing.T) *netns.NS { return netnstest.Tracked(t, "ctstat") }

// TestFreshNamespaceProcAndNetlinkAgree reads both sources in a fresh
// namespace before and after refused connections on lo, and checks them against
// each other, against conntrack -S / -C, and against the CPUs of the machine.
func TestFreshNamespaceProcAndNetlinkAgree(t *testing.T) {
	ns := freshNS(t)
	// From a thread inside ns: /proc/thread-self and netlink without a
	// namespace; from anywhere: netlink with the namespace's fd.
	read := func() (p, n0, nfd Snapshot) {
		t.Helper()
		err := ns.Do(func() (err error) {
			if p, err = ReadProc(ProcPath); err != nil {
				return err
			}
			n0, err = ReadNetlink(nil)
			return err
		})
		if err == nil {
			nfd, err = ReadNetlink(ns)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p, n0, nfd
	}
	before, _, _ := read()

	// Open connections on lo: each is one ESTABLISHED entry while it lasts. (A
	// refused connection leaves none: the RST kills the unassured entry.)
	const conns = 5
	var open []io.Closer
	err := ns.Do(func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		open = append(open, l)
		d := net.Dialer{Timeout: 2 * time.Second}
		for range conns {
			c, err := d.Dial("tcp4", l.Addr().String())
			if err != nil {
				return fmt.Errorf("connecting to %s: %w", l.Addr(), err)
			}
			open = append(open, c)
		}
		return nil
	})
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	if err != nil {
		t.Fatal(err)
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

	var maxProc uint64
	if err := ns.Do(func() (err error) { maxProc, err = ReadMax(""); return err }); err != nil {
		t.Fatal(err)
	}
	g, err := ReadNetlinkGlobal(ns)
	if err != nil {
		t.Fatal(err)
	}
	if g.Max != maxProc || g.Entries != proc.Entries || nl.Max != maxProc {
		t.Errorf("netlink global %+v; proc max %d entries %d", g, maxProc, proc.Entries)
	}

	if _, err := exec.LookPath("conntrack"); err == nil {
		out := netnstest.Run(t, ns, "", "conntrack", "-S")
		if got, want := conntrackS(nl.CPUs), normalizeS(out); got != want {
			t.Errorf("ReadNetlink\n%s\nconntrack -S\n%s", got, want)
		}
	}
	if *record {
		recordNetlink(t, ns)
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

func recordNetlink(t *testing.T, ns *netns.NS) {
	c, err := dial(ns)
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
	out := netnstest.Run(t, ns, "", "conntrack", "-S")
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
