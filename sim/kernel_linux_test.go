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

	"github.com/snatrace/snatrace/kernel"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// The running kernel sends the SYNs the model says its era sends: a
// connect() in a fresh namespace, whose SYNs an nft rule counts and drops,
// sends in 5.5 s as many SYNs as Backoff leaves room for (6 with
// tcp_syn_linear_timeouts, 6.5+: at 0, 1, 2, 3, 4, 5 s; 3 before: 0, 1, 3 s).
func TestSYNScheduleIsTheKernels(t *testing.T) {
	ns := netnstest.New(t, "synsched")
	linear, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
	release, rerr := kernel.Release()
	v, verr := kernel.ParseVersion(release)
	if rerr != nil || verr != nil {
		t.Fatal(rerr, verr)
	}
	era := natmodel.ClassOf(v)
	// The sysctl exists from 6.5 on, at 4 unless someone changed it.
	if got := strconv.Itoa(era.SynLinearTimeouts()) + "\n"; err == nil && string(linear) != got || err != nil && era.SynLinearTimeouts() != 0 {
		t.Fatalf("kernel %s: tcp_syn_linear_timeouts %q (%v); the model of era %v assumes %q", release, linear, err, era, got)
	}
	netnstest.Run(t, ns, "", "ip", "link", "set", "lo", "up")
	netnstest.Run(t, ns, `table ip t { chain out { type filter hook output priority 0; ip daddr 127.0.0.2 tcp dport 9 tcp flags syn counter drop; }; }`, "nft", "-f", "-")
	const wait = 5500 * time.Millisecond
	err = ns.Do(func() error {
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
	for Backoff(want, time.Second, era.SynLinearTimeouts()) < wait {
		want++
	}
	if m[1] != strconv.Itoa(want) {
		t.Errorf("kernel %s sent %s SYNs in %v; the model of era %v sends %d", release, m[1], wait, era, want)
	}
}
