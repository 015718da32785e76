//go:build linux

package exporter

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/snatrace/snatrace/ctstat"
)

// BenchmarkCollect measures one in-process scrape of the collector against the
// running kernel, through each source.
func BenchmarkCollect(b *testing.B) {
	for _, src := range []struct {
		name string
		opt  Option
	}{
		{"netlink", WithConntrack(ctstat.NewNetlinkReader(nil).Read, nil, nil)},
		{"proc", WithConntrack(nil, func() (ctstat.Snapshot, error) { return ctstat.ReadProc(ctstat.ProcPath) },
			func() (uint64, error) { return ctstat.ReadMax("") })},
	} {
		b.Run(src.name, func(b *testing.B) {
			e := New(src.opt, WithKernelRelease("6.18.0"))
			reg := prometheus.NewRegistry()
			reg.MustRegister(e)
			if _, err := reg.Gather(); err != nil {
				b.Skip(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompareNodeExporter is the side-by-side benchmark of
// BENCHMARKS.md (exporter): snatrace exporter and Debian's
// prometheus-node-exporter (conntrack collector only), each started on a
// free 127.0.0.1 port, scraped b.N times each, alternately. It reports both
// exporters' latency percentiles and the ratios, and prints a table of
// them with RSS and body size. Run it with a fixed count, e.g.
// -benchtime 5000x.
func BenchmarkCompareNodeExporter(b *testing.B) {
	ne, err := exec.LookPath("prometheus-node-exporter")
	if err != nil {
		b.Skip("needs prometheus-node-exporter:", err)
	}
	bin := buildSnatrace(b)
	targets := []*scrapeTarget{
		{name: "snatrace exporter --no-audit", argv: func(a string) []string { return []string{bin, "exporter", "--no-audit", "--listen", a} }},
		{name: "prometheus-node-exporter --collector.disable-defaults --collector.conntrack", argv: func(a string) []string {
			return []string{ne, "--collector.disable-defaults", "--collector.conntrack", "--web.listen-address", a}
		}},
	}
	for _, tg := range targets {
		tg.start(b)
	}
	b.ResetTimer()
	// Alternate the scrapes, so that noise from the rest of the machine hits
	// both exporters alike.
	for range b.N {
		for _, tg := range targets {
			start := time.Now()
			k, err := scrapeLen(tg.url)
			if err != nil {
				b.Fatal(err)
			}
			tg.lat = append(tg.lat, time.Since(start))
			tg.body = k
		}
	}
	b.StopTimer()
	reportComparison(b, targets)
}

// scrapeTarget is one exporter of BenchmarkCompareNodeExporter.
type scrapeTarget struct {
	name string
	argv func(addr string) []string
	cmd  *exec.Cmd
	url  string
	lat  []time.Duration
	body int
}

// start starts tg on a free loopback port and waits until it answers.
func (tg *scrapeTarget) start(b *testing.B) {
	addr := freeAddr(b)
	argv := tg.argv(addr)
	tg.cmd = exec.Command(argv[0], argv[1:]...)
	err := tg.cmd.Start()
	if err != nil {
		b.Fatal(err)
	}
	c := tg.cmd
	b.Cleanup(func() { c.Process.Kill(); c.Wait() }) // by PID: the process we started
	tg.url = "http://" + addr + "/metrics"
	for i := 0; i < 100; i++ {
		if _, err = scrapeLen(tg.url); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("%s did not come up on %s: %v", tg.name, addr, err)
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

// scrapeLen GETs url and returns the body's length.
func scrapeLen(url string) (int, error) {
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	k, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return int(k), err
}

// reportComparison reports the percentiles of both targets and their
// ratios as benchmark metrics, and prints the BENCHMARKS.md table.
func reportComparison(b *testing.B, targets []*scrapeTarget) {
	type result struct {
		p50, p99, max time.Duration
		rss, hwm      int
	}
	n := b.N
	var rs []result
	for _, tg := range targets {
		lat := tg.lat
		slices.Sort(lat)
		pid := tg.cmd.Process.Pid
		rs = append(rs, result{lat[n/2], lat[n*99/100], lat[n-1], procStatus(b, pid, "VmRSS:"), procStatus(b, pid, "VmHWM:")})
	}
	a, ne := rs[0], rs[1]
	b.ReportMetric(float64(a.p50.Microseconds()), "snatrace-p50-µs")
	b.ReportMetric(float64(ne.p50.Microseconds()), "node_exporter-p50-µs")
	b.ReportMetric(float64(a.p50)/float64(ne.p50), "p50-ratio")
	b.ReportMetric(float64(a.p99)/float64(ne.p99), "p99-ratio")
	if n < 100 {
		return // the first, one-scrape run
	}
	fmt.Printf("| exporter | scrapes | p50 | p99 | max | RSS after | peak RSS | body bytes |\n|---|---|---|---|---|---|---|---|\n")
	for i, r := range rs {
		fmt.Printf("| %s | %d | %v | %v | %v | %.1f MiB | %.1f MiB | %d |\n", targets[i].name, n,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond),
			float64(r.rss)/1024, float64(r.hwm)/1024, targets[i].body)
	}
	fmt.Printf("\nratios snatrace/node_exporter: p50 %.2f, p99 %.2f, RSS %.2f\n",
		float64(a.p50)/float64(ne.p50), float64(a.p99)/float64(ne.p99), float64(a.rss)/float64(ne.rss))
}

// buildSnatrace builds the snatrace binary into b's temporary directory.
func buildSnatrace(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "snatrace")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/snatrace").CombinedOutput(); err != nil {
		b.Fatalf("building snatrace: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procStatus returns a kB field of /proc/PID/status.
func procStatus(t testing.TB, pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
