//go:build linux

package sim

import (
	"errors"
	"net"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// The running kernel sends the SYNs the model says its era sends: a
// connect() in a fresh namespace, whose SYNs an nft rule counts and drops,
// sends in 5.5 s as many SYNs as Backoff leaves room for (6 with
// tcp_syn_linear_timeouts, 6.5+: at 0, 1, 2, 3, 4, 5 s; 3 before: 0, 1, 3 s).
// On a kernel with the sysctl, the namespace's own setting of 1 (SYNs at
// 0, 1, 2, 4 s) is what --syn-linear-timeouts 1 models.
func TestSYNScheduleIsTheKernels(t *testing.T) {
	release, rerr := kernel.Release()
	v, verr := kernel.ParseVersion(release)
	if rerr != nil || verr != nil {
		t.Fatal(rerr, verr)
	}
	era := natmodel.ClassOf(v)
	t.Run("default", func(t *testing.T) {
		ns := netnstest.New(t, "synsched")
		// The sysctl exists from 6.5 on, at 4 in a new namespace.
		linear, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
		if got := strconv.Itoa(era.SynLinearTimeouts()) + "\n"; err == nil && string(linear) != got || err != nil && era.HasSynLinearTimeouts() {
			t.Fatalf("kernel %s: tcp_syn_linear_timeouts %q (%v); the model of era %v assumes %q", release, linear, err, era, got)
		}
		checkSYNSchedule(t, ns, release, era.SynLinearTimeouts())
	})
	t.Run("linear=1", func(t *testing.T) {
		if !era.HasSynLinearTimeouts() {
			testenv.Skip(t, "kernel %s has no tcp_syn_linear_timeouts (6.5 and later)", release)
		}
		ns := netnstest.New(t, "synlin")
		netnstest.Run(t, ns, "", "sysctl", "-q", "-w", "net.ipv4.tcp_syn_linear_timeouts=1")
		c := Config{Era: era, SynLinearTimeouts: new(1)}
		c.defaults()
		if err := c.validateLinear(); err != nil {
			t.Fatal(err)
		}
		checkSYNSchedule(t, ns, release, c.linearTimeouts())
	})
}

// checkSYNSchedule counts the SYNs a connect() in ns sends in 5.5 s and
// compares them with Backoff's schedule for linear linear timeouts.
func checkSYNSchedule(t *testing.T, ns *netns.NS, release string, linear int) {
	t.Helper()
	netnstest.Run(t, ns, "", "ip", "link", "set", "lo", "up")
	netnstest.Run(t, ns, `table ip t { chain out { type filter hook output priority 0; ip daddr 127.0.0.2 tcp dport 9 tcp flags syn counter drop; }; }`, "nft", "-f", "-")
	const wait = 5500 * time.Millisecond
	err := ns.Do(func() error {
		_, err := (&net.Dialer{Timeout: wait}).Dial("tcp", "127.0.0.2:9")
		return err
	})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connect: %v, want a timeout", err)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(netnstest.Run(t, ns, "", "nft", "list", "chain", "ip", "t", "out"))
	if m == nil {
		t.Fatal("no counter in the chain")
	}
	want := 0
	for Backoff(want, time.Second, linear) < wait {
		want++
	}
	if m[1] != strconv.Itoa(want) {
		t.Errorf("kernel %s sent %s SYNs in %v; the model with %d linear timeouts sends %d", release, m[1], wait, linear, want)
	}
}
