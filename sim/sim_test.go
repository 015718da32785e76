package sim

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/natrule"
)

func mode(t testing.TB, s string) natrule.Mode {
	t.Helper()
	m, err := natrule.ParseMode(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t testing.TB, c Config) Result {
	t.Helper()
	r, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// allRacing is a burst where k pods on k CPUs NAT at the same instant and
// every window overlaps every other; entries vanish before the next burst.
func allRacing(k, bursts int, nat natrule.Mode, w string) Config {
	return Config{
		Era: natmodel.Era50, NAT: nat, Workload: w, Pods: k, CPUs: k,
		Connections: k * bursts,
		Window:      Dist{Kind: Const, A: time.Millisecond},
		Skew:        Dist{Kind: Uniform}, // all 0 (the zero Dist means "default")
		Gap:         Dist{Kind: Const, A: 10 * time.Millisecond},
		Lifetime:    Dist{Kind: Const, A: 1},
		CTTimeWait:  5 * time.Millisecond, // gone before the next burst
		RTO:         RTOMax,               // retransmissions after all bursts
		Seed:        42,
	}
}

// Plain masquerade, same-port burst: every pair of concurrent flows keeps the
// same port, so exactly one flow per burst confirms.
func TestSamePortEveryConcurrentPairClashes(t *testing.T) {
	for _, k := range []int{2, 5, 16} {
		const bursts = 500
		r := run(t, allRacing(k, bursts, mode(t, "masquerade"), labnet.SamePort))
		if got := r.Delayed["0"]; got != bursts {
			t.Errorf("k=%d: %d first-try successes, want %d (one per burst)", k, got, bursts)
		}
		if r.Steps["preserve"] < uint64(k*bursts) {
			t.Errorf("k=%d: steps %v, want every first SYN preserved", k, r.Steps)
		}
	}
}

// fully-random, k flows racing to one destination over a 100-port range:
// the expected number of distinct ports (first-try successes) per burst is
// the birthday figure sum_i 1-(1-p_i)^k, with p_i the kernel's u16-offset
// probabilities (ports 0..35 of the range get 656/65536, the rest 655/65536).
func TestFullyRandomBirthdayBound(t *testing.T) {
	for _, k := range []int{2, 8, 24} {
		const bursts = 20000
		r := run(t, allRacing(k, bursts, mode(t, "masquerade to :1024-1123 fully-random"), labnet.Ephemeral))
		var want float64
		for i := 0; i < 100; i++ {
			p := 655.0 / 65536
			if i < 36 {
				p = 656.0 / 65536
			}
			want += 1 - math.Pow(1-p, float64(k))
		}
		got := float64(r.Delayed["0"]) / bursts
		// per-burst drops have variance below their mean (k - want).
		se := math.Sqrt((float64(k)-want)/bursts) + 1e-9
		if math.Abs(got-want) > 4*se {
			t.Errorf("k=%d: %.4f distinct ports per burst, birthday bound %.4f (±%.4f)", k, got, want, 4*se)
		}
	}
}

// One CPU never races: NAT and confirm of one packet finish before the next.
func TestOneCPUNoClash(t *testing.T) {
	c := allRacing(1, 1000, mode(t, "masquerade"), labnet.SamePort)
	c.Pods = 16
	c.Connections = 16000
	c.Gap = Dist{Kind: Const, A: time.Microsecond} // shorter than the window: SYNs queue
	r := run(t, c)
	if r.Clashes != 0 {
		t.Errorf("one CPU: %d clashes", r.Clashes)
	}
}

// Dropped SYNs come back after 1, 3, 7 ... s and the delays say so.
func TestRetransmissionDelays(t *testing.T) {
	c := allRacing(2, 50, mode(t, "masquerade"), labnet.SamePort)
	c.RTO = time.Second
	r := run(t, c)
	if r.Delayed["0"] != 50 || r.Delayed["1"] != 50 || r.Clashes != 50 || r.SYNs != 150 {
		t.Errorf("delayed %v clashes %d syns %d", r.Delayed, r.Clashes, r.SYNs)
	}
	if r.LatencyMS.Max < 1000 || r.LatencyMS.Max > 1002 {
		t.Errorf("max latency %v ms, want about 1001", r.LatencyMS.Max)
	}
}

// A SYN that clashes every time gives up after tcp_syn_retries.
func TestFailedAfterRetries(t *testing.T) {
	c := allRacing(2, 1, mode(t, "masquerade to :5000-5000"), labnet.Ephemeral)
	c.SynRetries = 2
	c.RTO = time.Second
	c.CTTimeWait = time.Hour // the winner keeps the only port
	c.Lifetime = Dist{Kind: Const, A: time.Hour}
	r := run(t, c)
	if r.Failed != 1 || r.Clashes != 3 || r.Delayed["3"] != 1 {
		t.Errorf("failed %d clashes %d delayed %v", r.Failed, r.Clashes, r.Delayed)
	}
}

func TestDeterministic(t *testing.T) {
	c := Config{Era: natmodel.Era50, NAT: mode(t, "masquerade"), Workload: labnet.Ephemeral, Pods: 64, CPUs: 4, Connections: 20000, Seed: 9,
		Window: Dist{Kind: Exp, A: 20 * time.Microsecond}, Gap: Dist{Kind: Exp, A: 5 * time.Microsecond}}
	a, b := run(t, c), run(t, c)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("same seed, different results:\n%+v\n%+v", a, b)
	}
	c.Seed = 10
	if d := run(t, c); reflect.DeepEqual(a.Steps, d.Steps) && a.Clashes == d.Clashes && a.Conntrack == d.Conntrack {
		t.Errorf("different seeds gave identical results")
	}
}

// Counters follow the era: every drop is insert_failed and drop.
func TestCountersMatchClashes(t *testing.T) {
	for _, era := range []natmodel.Era{natmodel.Legacy, natmodel.Era50, natmodel.Era65} {
		c := allRacing(4, 200, mode(t, "masquerade"), labnet.SamePort)
		c.Era = era
		r := run(t, c)
		if r.Conntrack.InsertFailed != r.Clashes || r.Conntrack.Drop != r.Clashes || r.Clashes == 0 {
			t.Errorf("%v: clashes %d counters %+v", era, r.Clashes, r.Conntrack)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{NAT: mode(t, "masquerade")}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"workload", func(c *Config) { c.Workload = "burst" }, "workload:"},
		{"steady needs rate", func(c *Config) { c.Workload = labnet.Steady }, "rate:"},
		{"pods", func(c *Config) { c.Pods = -1 }, "pods:"},
		{"cpus", func(c *Config) { c.CPUs = MaxCPUs + 1 }, "cpus:"},
		{"connections", func(c *Config) { c.Connections = MaxSYNs + 1 }, "connections:"},
		// Up to three SYNs a connection count against MaxSYNs.
		{"connections and retries", func(c *Config) { c.Connections = MaxConnections(6) + 1 }, "connections: 16666667 is out of range 1..16666666"},
		{"rate x duration", func(c *Config) {
			c.Workload, c.Rate, c.Duration = labnet.Steady, 1e6, 20*time.Second
		}, "duration: 20s at 1e+06/s is 2e+07 connections"},
		// The clock is int64 nanoseconds: a year of arrivals at most.
		{"rate too low", func(c *Config) { c.Workload, c.Rate = labnet.Steady, 1e-6 }, "rate:"},
		{"paced bursts too slow", func(c *Config) { c.Rate, c.Connections = 1e-9, 64 }, "rate:"},
		{"rto", func(c *Config) { c.RTO = RTOMax + 1 }, "rto:"},
		{"port state", func(c *Config) { c.Pods, c.Servers, c.Connections = MaxPods, 16, 2_000_000 }, "pods: the connections would use 2000000 of the"},
		{"port range", func(c *Config) { c.PortRange = [2]uint16{5000, 4000} }, "port-range:"},
		{"chooser", func(c *Config) { c.Chooser = "magic" }, "chooser:"},
		{"ipv6 snat", func(c *Config) { c.NAT = mode(t, "snat to 2001:db8::1") }, "nat:"},
		{"linear timeouts before 6.5", func(c *Config) { c.Era, c.SynLinearTimeouts = natmodel.Era50, new(4) },
			"syn-linear-timeouts: era 5.0 has no net.ipv4.tcp_syn_linear_timeouts"},
		{"linear timeouts range", func(c *Config) { c.SynLinearTimeouts = new(MaxSynLinearTimeouts + 1) }, "syn-linear-timeouts: 128 is out of range 0..127"},
		{"linear timeouts negative", func(c *Config) { c.SynLinearTimeouts = new(-1) }, "syn-linear-timeouts: -1 is out of range"},
		{"linear timeouts udp", func(c *Config) { c.Proto, c.SynLinearTimeouts = UDP, new(0) }, "syn-linear-timeouts: a TCP setting"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
			t.Errorf("%s: error %v, want prefix %q", tc.name, err, tc.want)
		}
	}
	c := ok
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, n := range []int{0, MaxSynLinearTimeouts} {
		c := ok
		c.SynLinearTimeouts = &n
		if err := c.Validate(); err != nil || c.linearTimeouts() != n {
			t.Errorf("--syn-linear-timeouts %d on %v: %v, linear %d", n, c.Era, err, c.linearTimeouts())
		}
	}
}

func TestParseDist(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Dist
		ok   bool
	}{
		{"5us", Dist{Kind: Const, A: 5 * time.Microsecond}, true},
		{"const:2ms", Dist{Kind: Const, A: 2 * time.Millisecond}, true},
		{"exp:20µs", Dist{Kind: Exp, A: 20 * time.Microsecond}, true},
		{"uniform:0-50us", Dist{Kind: Uniform, A: 0, B: 50 * time.Microsecond}, true},
		{"uniform:1us-2ms", Dist{Kind: Uniform, A: time.Microsecond, B: 2 * time.Millisecond}, true},
		{"lognormal:10us,0.8", Dist{Kind: LogNormal, A: 10 * time.Microsecond, Sigma: 0.8}, true},
		{"uniform:50-10us", Dist{}, false},
		{"exp:-1us", Dist{}, false},
		{"gamma:1us", Dist{}, false},
		{"lognormal:1us", Dist{}, false},
		{"lognormal:1us,x", Dist{}, false},
		{"48h", Dist{}, false},
		{"", Dist{}, false},
	} {
		got, err := ParseDist(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDist(%q) = %+v, %v", tc.in, got, err)
		}
		if err == nil {
			if back, err := ParseDist(got.String()); err != nil || back != got {
				t.Errorf("round trip %q -> %q: %+v %v", tc.in, got.String(), back, err)
			}
		}
	}
}

func FuzzParseDist(f *testing.F) {
	for _, s := range []string{"5us", "exp:20us", "uniform:0-50us", "lognormal:10us,0.8", "uniform:-", "lognormal:,", "exp:1e400s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDist(s)
		if err != nil {
			return
		}
		if d.A < 0 || d.B < 0 || d.A > maxDist || d.B > maxDist {
			t.Errorf("ParseDist(%q) = %+v out of range", s, d)
		}
	})
}

// A scenario whose port searches take more work than MaxProbes allows
// stops with ErrTooLong, saying whose ports ran out.
func TestTooLong(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		// legacy random: every search to one server starts at the same
		// keyed hash and passes every port in use.
		{"nat", Config{Era: natmodel.Legacy, NAT: mode(t, "masquerade random"), Workload: labnet.Ephemeral,
			Pods: 4, Connections: 100_000, MaxProbes: 1_000_000}, "a NAT port range is exhausted"},
		// 100 local ports a pod, each held for a minute of TIME_WAIT.
		{"pods", Config{Era: natmodel.Era65, NAT: mode(t, "masquerade fully-random"), Workload: labnet.Steady, Rate: 100_000,
			Pods: 2, Servers: 1, PortRange: [2]uint16{30000, 30099}, Connections: 200_000, MaxProbes: 10_000}, "the pods' local ports are exhausted"},
	} {
		_, err := Run(context.Background(), tc.cfg)
		if !errors.Is(err, ErrTooLong) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrTooLong saying %q", tc.name, err, tc.want)
		}
	}
}

// An exhausted NAT range before 5.0, where every SYN scans the whole range,
// finishes within MaxProbes: a scan passes the range's full words through
// the index's summary, and the work counted is the words read (each SYN
// here once counted a thousand, and 200,000 connections hit the bound).
func TestLegacyExhaustionFinishes(t *testing.T) {
	for _, nat := range []string{"masquerade", "masquerade random"} {
		c := Config{Era: natmodel.Legacy, NAT: mode(t, nat), Workload: labnet.Ephemeral, Pods: 64, CPUs: 16,
			Rate: 100_000, Connections: 200_000, Seed: 1}
		r := run(t, c)
		if r.NoTuple == 0 || r.Failed == 0 {
			t.Errorf("%s: %d SYNs without a tuple, %d failed: want the range exhausted", nat, r.NoTuple, r.Failed)
		}
	}
}

// With rounds, the next round waits for the last retransmission of the
// previous one: four one-burst rounds that each lose a SYN take four RTOs.
func TestRoundsWaitForRetransmissions(t *testing.T) {
	c := allRacing(2, 4, mode(t, "masquerade"), labnet.SamePort)
	c.RTO = time.Second
	c.RoundSize = 2
	r := run(t, c)
	if r.Clashes != 4 || r.SimSeconds < 4 || r.SimSeconds > 4.2 {
		t.Errorf("clashes %d over %.3f s, want 4 over about 4 s", r.Clashes, r.SimSeconds)
	}
	c.RoundSize = 0
	if r := run(t, c); r.SimSeconds > 1.2 {
		t.Errorf("without rounds: %.3f s, want about 1 s", r.SimSeconds)
	}
}

// Retransmissions of SYNs dropped at confirm come back through
// natmodel's NewConnFresh: on an exhausted range, with ports freed again
// and in the PAWS-rejecting short workload, the run's results are the same
// whether or not the model checks that promise with the lookups it saves —
// and checking it does not panic.
func TestFreshRetransmissionsChangeNothing(t *testing.T) {
	base := Config{Era: natmodel.Era50, NAT: mode(t, "masquerade to :1024-1279"), Workload: labnet.Ephemeral,
		Pods: 16, CPUs: 4, Connections: 3000, Rate: 2000, Seed: 3, CTTimeWait: time.Second, RTO: 200 * time.Millisecond}
	short := base
	short.Workload = labnet.Short
	for name, c := range map[string]Config{"5.0 exhausted": base, "5.0 short": short} {
		t.Run(name, func(t *testing.T) {
			defer func(v bool) { verifyModel = v }(verifyModel)
			verifyModel = true
			checked := run(t, c)
			verifyModel = false
			if plain := run(t, c); !reflect.DeepEqual(checked, plain) {
				t.Errorf("results differ:\nverified %+v\nplain    %+v", checked, plain)
			}
			if checked.Clashes == 0 || checked.Delayed["1"] == 0 {
				t.Errorf("no SYN was dropped at confirm and came back (clashes %d, delayed %v): the fresh path is not exercised", checked.Clashes, checked.Delayed)
			}
			if c.Workload == labnet.Short && checked.PAWSTimewait == 0 {
				t.Errorf("no SYN was rejected by a server's TIME_WAIT: the reopened entries are not exercised")
			}
		})
	}
}

// The SYN timeouts: linear for the first ones from 6.5
// (tcp_syn_linear_timeouts), then doubling up to TCP_RTO_MAX.
func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		linear int
		want   []time.Duration // Backoff(k) in s for k = 0, 1, ...
	}{
		{0, []time.Duration{0, 1, 3, 7, 15, 31, 63, 127, 247, 367}},
		{4, []time.Duration{0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67, 131, 251}},
	} {
		for k, want := range tc.want {
			if got := Backoff(k, time.Second, tc.linear); got != want*time.Second {
				t.Errorf("Backoff(%d, 1s, %d) = %v, want %v", k, tc.linear, got, want*time.Second)
			}
		}
	}
}

// A connect() that never gets through sends the SYNs its kernel allows and
// gives up as tcp_write_timeout does: after syn-retries retransmissions
// (and the linear ones, 6.5+: the era's or --syn-linear-timeouts') or
// tcp_model_timeout, whichever comes first, or at the client's own timeout.
// One NAT port, held for an hour by the first connection, drops every SYN
// of the second.
func TestSYNSchedule(t *testing.T) {
	for _, tc := range []struct {
		era     natmodel.Era
		retries int
		timeout time.Duration
		syns    uint64
		gaveUp  float64 // ms after the first SYN
		linear  int     // --syn-linear-timeouts; -1: the era's
	}{
		{natmodel.Era50, 6, 0, 7, 127000, -1},                 // 0 1 3 7 15 31 63, ETIMEDOUT at 127 s
		{natmodel.Era65, 6, 0, 11, 131000, -1},                // 0 1 2 3 4 5 7 11 19 35 67, at 131 s
		{natmodel.Era50, 8, 0, 9, 367000, -1},                 // timeouts capped at 120 s
		{natmodel.Era65, 2, 0, 6, 7000, -1},                   // 0-5; tcp_model_timeout(2) = 7 s comes first
		{natmodel.Era50, 6, 8 * time.Second, 4, 8000, -1},     // the lab's client: 0 1 3 7
		{natmodel.Era65, 6, 8 * time.Second, 7, 8000, -1},     // 0 1 2 3 4 5 7
		{natmodel.Era50, 8, 100 * time.Second, 7, 100000, -1}, // the next would go at 127 s
		{natmodel.Era65, 6, 0, 7, 127000, 0},                  // --syn-linear-timeouts 0: as before 6.5
		{natmodel.Era65, 6, 0, 8, 128000, 1},                  // 0 1 2 4 8 16 32 64; 7 retransmissions, then 128 s
		{natmodel.Era65, 2, 0, 3, 7000, 0},                    // 0 1 3; tcp_model_timeout(2) = 7 s
		{natmodel.Era65, 20, 0, 147, 1814000, 127},            // 0..128 s each second, 130 134 … 374, +120 s; tcp_model_timeout(20) = 1807 s
	} {
		c := Config{Era: tc.era, NAT: mode(t, "masquerade to :1024-1024"), Workload: labnet.Steady,
			Rate: 1, Pods: 2, Connections: 2, SynRetries: tc.retries, ConnectTimeout: tc.timeout, Seed: 1,
			Lifetime: Dist{Kind: Const, A: time.Hour}, CTTimeWait: time.Hour}
		if tc.linear >= 0 {
			c.SynLinearTimeouts = &tc.linear
		}
		r := run(t, c)
		if r.Failed != 1 || r.SYNs != 1+tc.syns {
			t.Errorf("%v, %d retries, timeout %v, %d linear: failed %d, SYNs %d; want 1 failed after %d SYNs, and 1 SYN that got through",
				tc.era, tc.retries, tc.timeout, r.SynLinearTimeouts, r.Failed, r.SYNs, tc.syns)
		}
		if got := r.LatencyMS.Max; math.Abs(got-tc.gaveUp) > 1 {
			t.Errorf("%v, %d retries, timeout %v, %d linear: gave up after %v ms, want %v", tc.era, tc.retries, tc.timeout, r.SynLinearTimeouts, got, tc.gaveUp)
		}
	}
}

// The human table puts each connection in one column: a failed connection
// (Delayed under syn-retries+1) only under "failed", whatever syn-retries
// is.
func TestWriteResultsColumns(t *testing.T) {
	c := Config{SynRetries: 1, RTO: 200 * time.Millisecond, Workload: labnet.Steady}
	r := Result{Era: "5.0", NAT: "masquerade", Connections: 3000, Delayed: map[string]int{"0": 100, "2": 2900}, Failed: 2900}
	var b strings.Builder
	if err := WriteResults(&b, c, []Result{r}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if !strings.HasSuffix(strings.TrimSpace(lines[2]), "1 retx  2 retx  3+ retx  failed  p99 ms") {
		t.Fatalf("heading %q", lines[2])
	}
	row := strings.Fields(lines[3])
	if got, want := row[len(row)-5:], []string{"0", "0", "0", "2900", "0.0"}; !slices.Equal(got, want) {
		t.Errorf("retransmission columns %v, want %v\n%s", got, want, b.String())
	}
}

// The notes under the table name the exhausted resource with its numbers:
// the NAT tuples a rate keeps busy against the range's, and the connects
// that found no local port.
func TestWriteResultsNotes(t *testing.T) {
	c := Config{Workload: labnet.Steady, Rate: 5000, Servers: 1, CTTimeWait: 120 * time.Second, NAT: mode(t, "masquerade"),
		PortRange: [2]uint16{30000, 30099}, ClientTimeWait: time.Minute, SynRetries: 6, RTO: time.Second}
	r := Result{Era: "5.0", NAT: "masquerade", NoTuple: 10, NoPort: 7, Delayed: map[string]int{}}
	r2 := Result{Era: "5.0", NAT: "masquerade to :1024-1100", NoTuple: 10, Delayed: map[string]int{}}
	var b strings.Builder
	if err := WriteResults(&b, c, []Result{r, r2}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"keep about 600,000 tuples busy each, and masquerade to :1024-1100 has 77.", // each row its own range
		"5,000 connections/s to each of 1 destination(s) × 2m0s of conntrack TIME_WAIT keep about 600,000 tuples busy each, and masquerade has 64,512.",
		"7 connect()s found no free local port in their pod and failed at once (EADDRNOTAVAIL): --port-range 30000-30099, each port held 1m0s",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
}

// A UDP query whose NAT search found no free tuple counts as a no-tuple
// drop, as a TCP SYN does: with ten NAT ports for 64 pods nearly every
// datagram is one, and each is also a clash.
func TestUDPNoTuple(t *testing.T) {
	c := Config{Proto: UDP, Era: natmodel.Era{Major: 4, Minor: 14}, NAT: mode(t, "masquerade to :20000-20009"),
		Workload: labnet.Ephemeral, Pods: 64, CPUs: 16, Connections: 2000, Seed: 1}
	r := run(t, c)
	if r.NoTuple == 0 || r.NoTuple > r.Clashes || r.NoTuple > r.Steps["exhausted"] {
		t.Errorf("no-tuple drops %d, clashes %d, exhausted searches %d: want 0 < no-tuple <= both", r.NoTuple, r.Clashes, r.Steps["exhausted"])
	}
}

// From 6.5 a connection may get through after more retransmissions than
// tcp_syn_retries (the linear timeouts add their own): each connection is
// counted once in Delayed, a failed one one above the era's most. (Such a
// connection overflowed the histogram and panicked.)
func TestDelayedCountsEveryConnection(t *testing.T) {
	for _, era := range []natmodel.Era{natmodel.Era50, natmodel.Era65} {
		c := Config{Era: era, NAT: mode(t, "masquerade to :1024-1100"), Workload: labnet.Steady, Rate: 100, Connections: 2000, Seed: 1,
			Lifetime: Dist{Kind: Const, A: 20 * time.Second}, CTTimeWait: time.Second}
		r := run(t, c)
		most, sum, late := MaxRetransmissions(6, era.SynLinearTimeouts()), 0, 0
		if r.SynLinearTimeouts != era.SynLinearTimeouts() {
			t.Errorf("%v: syn_linear_timeouts %d, want the era's %d", era, r.SynLinearTimeouts, era.SynLinearTimeouts())
		}
		for k, n := range r.Delayed {
			sum += n
			if v, _ := strconv.Atoi(k); v > 6 && v <= most {
				late += n
			}
		}
		if sum != r.Connections || r.Delayed[strconv.Itoa(most+1)] != r.Failed {
			t.Errorf("%v: delayed %v adds up to %d of %d connections; failed %d", era, r.Delayed, sum, r.Connections, r.Failed)
		}
		if era == natmodel.Era65 && late == 0 {
			t.Errorf("%v: no connection got through after more than 6 retransmissions: the test does not reach them", era)
		}
	}
}
