//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/trace"
)

func modes(t *testing.T, ss ...string) []natrule.Mode {
	t.Helper()
	var ms []natrule.Mode
	for _, s := range ss {
		m, err := natrule.ParseMode(s)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

func assertNoNamespaces(t *testing.T, prefix string) {
	t.Helper()
	if left, _ := netns.List(prefix); len(left) != 0 {
		t.Errorf("namespaces left behind: %v", left)
		Cleanup(prefix)
	}
}

// hostState is what the lab could change in the host namespace if it ever
// configured the wrong namespace, read so that nothing else changes it: the
// sysctls the lab writes (in its own namespaces), the rules without their
// counters, the link names, addresses and routes. (Not, say, a counter or
// nf_conntrack_max, which appears when the module loads.)
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/ip_local_port_range"} {
		v, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(f + "=" + string(v))
	}
	for _, c := range [][]string{
		{"nft", "--stateless", "list", "ruleset"},
		{"iptables-legacy-save"}, {"ip6tables-legacy-save"},
		{"ip", "-o", "addr"}, {"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
	} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		b.WriteString("$ " + strings.Join(c, " ") + "\n" + stripCounters(string(out)))
	}
	links, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		fmt.Fprintf(&b, "link %d %s\n", l.Index, l.Name)
	}
	return b.String()
}

// volatile are the parts of the host state that change by themselves:
// iptables-save's chain counters, address lifetimes, route expiry.
var volatile = regexp.MustCompile(`\[[0-9]+:[0-9]+\]|(valid|preferred)_lft \S+|expires \S+`)

// stripCounters drops iptables-save's comment lines (they carry the time)
// and blanks the volatile parts.
func stripCounters(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(volatile.ReplaceAllString(l, "_"))
		}
	}
	return b.String()
}

// TestSamePortRaceAndFix is the lab's promise: plain masquerade drops SYNs
// through the race, every drop is a kernel-counted insert failure that cost
// exactly one retransmitted SYN, and fully-random shows at least 10x fewer
// clashes on the same topology in the same run.
func TestSamePortRaceAndFix(t *testing.T) {
	needRoot(t)
	host := hostState(t)
	cfg := Config{
		Modes:       modes(t, "masquerade", "masquerade fully-random"),
		Pods:        2,
		Connections: 400000, // an upper bound: Until ends the run
		Until:       30,
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertNoNamespaces(t, rep.Prefix)
	if got := hostState(t); got != host {
		t.Errorf("host namespace changed:\nbefore:\n%s\nafter:\n%s", host, got)
	}
	plain, full := rep.Results[0], rep.Results[1]
	t.Logf("verdict: %s", rep.Verdict)
	if rep.Workload.TimeoutSeconds != DefaultTimeout.Seconds() {
		t.Errorf("report: timeout_seconds %v, want the default %v", rep.Workload.TimeoutSeconds, DefaultTimeout.Seconds())
	}
	if rep.Stopped != "until" {
		t.Fatalf("stopped by %q, want until (no race in %d connections?)", rep.Stopped, plain.Connections)
	}
	if plain.Conntrack.InsertFailed < 30 {
		t.Fatalf("masquerade: insert_failed = %d, want >= 30", plain.Conntrack.InsertFailed)
	}
	// Every clash drops exactly one SYN, which the client retransmits.
	if plain.SynRetrans != plain.Conntrack.InsertFailed {
		t.Errorf("masquerade: %d SYN retransmissions, kernel insert_failed %d", plain.SynRetrans, plain.Conntrack.InsertFailed)
	}
	// Counted per connection: the retransmissions of every connection add
	// up to the kernel's insert failures exactly (a connection that lost
	// twice retransmitted twice), and the connections that retransmitted
	// at all are those the histogram counts above 0.
	var perConn uint64
	retransmitted := 0
	for k, n := range plain.RetransHistogram {
		times, err := strconv.Atoi(k)
		if err != nil {
			t.Fatalf("histogram key %q", k)
		}
		perConn += uint64(times * n)
		if times > 0 {
			retransmitted += n
		}
	}
	if perConn != plain.Conntrack.InsertFailed || retransmitted != plain.Retransmitted {
		t.Errorf("masquerade: connections retransmitted %d SYNs (%d connections, reported %d), kernel insert_failed %d",
			perConn, retransmitted, plain.Retransmitted, plain.Conntrack.InsertFailed)
	}
	if plain.Conntrack.Drop != plain.Conntrack.InsertFailed {
		t.Errorf("masquerade: drop = %d, insert_failed = %d", plain.Conntrack.Drop, plain.Conntrack.InsertFailed)
	}
	if plain.SynRetransKernel != plain.SynRetrans {
		t.Errorf("pods' TcpExt TCPSynRetrans = %d, sockets say %d", plain.SynRetransKernel, plain.SynRetrans)
	}
	if !plain.CountersAgree || !plain.Accounted {
		t.Errorf("masquerade: counters agree %v, accounted %v: %s", plain.CountersAgree, plain.Accounted, plain.Note)
	}
	if plain.Delayed["1s"] == 0 || plain.LatencyMS.Max < 900 {
		t.Errorf("masquerade: no 1 s delay (max %.1f ms, classes %v)", plain.LatencyMS.Max, plain.Delayed)
	}
	if full.Connections != plain.Connections {
		t.Errorf("fully-random ran %d connections, masquerade %d", full.Connections, plain.Connections)
	}
	if 10*full.Conntrack.InsertFailed > plain.Conntrack.InsertFailed {
		t.Errorf("fully-random: %d clashes vs masquerade %d: not 10x fewer", full.Conntrack.InsertFailed, plain.Conntrack.InsertFailed)
	}
}

// TestBackendsBehaveAlike runs one mode pair through all three backends in one
// run: plain masquerade races on each, fully-random fixes it on each.
func TestBackendsBehaveAlike(t *testing.T) {
	needRoot(t)
	for _, b := range []string{"nft", "iptables-nft-restore", "iptables-legacy-restore"} {
		if _, err := exec.LookPath(b); err != nil {
			testenv.Skip(t, "needs %s", b)
		}
	}
	rep, err := Run(context.Background(), Config{
		Modes:       modes(t, "masquerade", "masquerade fully-random"),
		Backends:    natrule.Backends,
		Pods:        2,
		Connections: 400000,
		Until:       30,
		RoundSize:   1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoNamespaces(t, rep.Prefix)
	if len(rep.Results) != 6 {
		t.Fatalf("%d results, want 6", len(rep.Results))
	}
	var most uint64
	for _, r := range rep.Results[:3] {
		most = max(most, r.Conntrack.InsertFailed)
	}
	for i, r := range rep.Results {
		t.Logf("%s (%s): %d connections, %d clashes", r.NAT, r.Backend, r.Connections, r.Conntrack.InsertFailed)
		if i < 3 && r.Conntrack.InsertFailed == 0 {
			t.Errorf("%s through %s: no clash in %d connections", r.NAT, r.Backend, r.Connections)
		}
		if i >= 3 && 10*r.Conntrack.InsertFailed > most {
			t.Errorf("%s through %s: %d clashes, not 10x fewer than %d", r.NAT, r.Backend, r.Conntrack.InsertFailed, most)
		}
		if !r.Accounted {
			t.Errorf("%s through %s: %s", r.NAT, r.Backend, r.Note)
		}
	}
}

// TestCleanupOnError fails after the topology is built (iptables MASQUERADE
// has no --persistent) and checks nothing is left.
func TestCleanupOnError(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("iptables-legacy-restore"); err != nil {
		testenv.Skip(t, "needs iptables-legacy-restore")
	}
	prefix := NewPrefix()
	_, err := Run(context.Background(), Config{
		Modes:    modes(t, "masquerade persistent"),
		Backends: []natrule.Backend{natrule.IptablesLegacy},
		Prefix:   prefix, Pods: 2, Connections: 100,
	})
	if !errors.Is(err, natrule.ErrUnsupported) {
		t.Fatalf("Run = %v, want ErrUnsupported", err)
	}
	assertNoNamespaces(t, prefix)
}

// TestInterrupted cancels a long run and checks it stops promptly, returns
// its partial report and leaves nothing behind. An interrupt that falls in
// a round names that round; one between rounds names none, and the test
// interrupts again later, until one falls in a round (rounds with clashes
// last 1 s+: nearly always the first).
func TestInterrupted(t *testing.T) {
	needRoot(t)
	for _, after := range []time.Duration{2500, 2730, 3170, 3610, 4890, 6230} {
		if interruptAfter(t, after*time.Millisecond) {
			return
		}
	}
	t.Error("no interrupt fell in a round: the incomplete round is never named")
}

// interruptAfter runs the lab until cancelled after d and checks its
// partial report; it returns whether the report names an incomplete round.
func interruptAfter(t *testing.T, d time.Duration) bool {
	prefix := NewPrefix()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(d, cancel)
	rep, err := Run(ctx, Config{Prefix: prefix, Pods: 2, Connections: MaxConnections})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run = %v, want ErrInterrupted", err)
	}
	if rep == nil || rep.Stopped != "interrupted" {
		t.Fatalf("partial report = %+v", rep)
	}
	// Only completed rounds are counted, so each mode's SYNs add up; the
	// round in flight is named, not counted.
	sum := 0
	for _, r := range rep.Results {
		sum += r.Connections
		if !r.Accounted {
			t.Errorf("%s: does not add up after the interrupt: %s", r.NAT, r.Note)
		}
	}
	if sum != rep.Workload.Connections {
		t.Errorf("results hold %d connections, the workload %d", sum, rep.Workload.Connections)
	}
	assertNoNamespaces(t, prefix)
	if rep.Workload.Connections == 0 {
		// A busy host (CI runs packages side by side) can take longer
		// than the interrupt to end the first round: try later.
		t.Logf("the interrupt at %v fell before the first round ended", d)
		return false
	}
	c := rep.Incomplete
	if c == nil {
		t.Logf("the interrupt at %v fell between rounds", d)
		return false
	}
	if c.Connections == 0 || c.NAT == "" {
		t.Errorf("incomplete round %+v: a round cut before its first connection was in flight", c)
	}
	return true
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Pods: MaxPods + 1}, "pods: 1001 is out of range 1..1000"},
		{Config{Connections: -1}, "connections: -1 is out of range 1..2000000"},
		{Config{Workload: WorkloadConfig{Name: "burst"}}, `unknown workload "burst": want same-port, ephemeral, steady, short`},
		{Config{Workload: WorkloadConfig{Name: Short, Rate: -5}}, "rate: -5 connections/s is out of range [0, 1000000] (0: as fast as connections end)"},
		{Config{Workload: WorkloadConfig{Name: Short, Poisson: true}}, "poisson: Poisson arrivals need a --rate"},
		{Config{Workload: WorkloadConfig{Name: Short}, Pods: 600}, "pods: 600 per mode × 2 modes and backends is more than 1000 (the short workload gives each mode its own pods)"},
		{Config{Workload: WorkloadConfig{Name: Steady, Rate: -5}}, "rate: -5 connections/s is out of range (0, 1000000]"},
		{Config{PortRange: [2]uint16{2000, 1000}}, "port range 2000-1000: want 1024 <= first <= last"},
		{Config{Modes: modes(t, "snat to 192.0.2.1")}, `nat "snat to 192.0.2.1": snat addresses must be hosts of the lab uplink 198.51.100.0/24 other than 198.51.100.2 (the server)`},
		{Config{Servers: 2, Modes: modes(t, "snat to 198.51.100.1")}, `nat "snat to 198.51.100.1": snat modes need exactly one server (the address must be on its uplink)`},
		{Config{Until: -1}, "until: -1 must not be negative"},
	}
	for _, tt := range tests {
		err := tt.cfg.WithDefaults().Validate()
		if err == nil || err.Error() != tt.want {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// TestSession drives a lab round by round, as fix and trace tests do: plain
// masquerade clashes, then the same node with fully-random does not.
func TestSession(t *testing.T) {
	needRoot(t)
	s, err := Open(context.Background(), Config{Pods: 2})
	if err != nil {
		t.Fatal(err)
	}
	prefix := s.Topo.Prefix
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		assertNoNamespaces(t, prefix)
	}()
	ctx := context.Background()
	ms := modes(t, "masquerade", "masquerade fully-random")
	if err := s.Install(ctx, ms[0], natrule.Nftables); err != nil {
		t.Fatal(err)
	}
	plain, err := s.Round(ctx, 200000, 10)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Conntrack.InsertFailed < 10 || plain.SynRetrans != plain.Conntrack.InsertFailed {
		t.Fatalf("masquerade round: insert_failed %d, SYN retransmissions %d", plain.Conntrack.InsertFailed, plain.SynRetrans)
	}
	if err := s.Install(ctx, ms[1], natrule.Nftables); err != nil {
		t.Fatal(err)
	}
	full, err := s.Round(ctx, plain.Connections, 0)
	if err != nil {
		t.Fatal(err)
	}
	if full.Connections != plain.Connections || 10*full.Conntrack.InsertFailed > plain.Conntrack.InsertFailed {
		t.Fatalf("fully-random round: %d clashes in %d connections, masquerade %d in %d",
			full.Conntrack.InsertFailed, full.Connections, plain.Conntrack.InsertFailed, plain.Connections)
	}
}

// TestTrace runs the lab with the eBPF tracer: every SNAT clash the kernel
// counted is a drop the tracer attributed to a delayed connection of the lab,
// by tuple and time, and no delayed connection is left unexplained.
func TestTrace(t *testing.T) {
	needRoot(t)
	rep, err := Run(context.Background(), Config{
		Modes: modes(t, "masquerade"), Pods: 2, Connections: 400000, Until: 10, Trace: true,
	})
	if errors.Is(err, trace.ErrMissing) {
		testenv.Skip(t, "tracer unavailable here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Trace == nil {
		t.Fatal("no trace result")
	}
	t.Logf("insert_failed %d, retransmitted %d, trace %+v", r.Conntrack.InsertFailed, r.Retransmitted, *r.Trace)
	if uint64(r.Trace.Attributed) != r.Conntrack.InsertFailed || r.Trace.Unmatched != 0 || r.Trace.Extra != 0 {
		t.Errorf("trace %+v, kernel insert_failed %d", *r.Trace, r.Conntrack.InsertFailed)
	}
}

// TestWithDefaults: defaults are applied once, in one place, and Validate
// does not change the configuration.
func TestWithDefaults(t *testing.T) {
	c := Config{Workload: WorkloadConfig{Name: Steady}, Duration: 3 * time.Second}.WithDefaults()
	if c.Workload.Rate != DefaultRate || c.Connections != 3*DefaultRate || c.Pods != DefaultPods || len(c.Modes) != 2 || c.Backends[0] != natrule.Nftables {
		t.Errorf("steady defaults: %+v", c)
	}
	c = Config{Workload: WorkloadConfig{Name: Steady, Rate: 500}, Duration: 2 * time.Second, Connections: 7}.WithDefaults()
	if c.Connections != 7 {
		t.Errorf("explicit connections overridden: %d", c.Connections)
	}
	before := Config{Pods: 3}.WithDefaults()
	after := before
	if err := after.Validate(); err != nil || !reflect.DeepEqual(before, after) {
		t.Errorf("Validate changed the config or failed: %v", err)
	}
}
