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
	"sort"
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

// TestCompareNodeExporter is the side-by-side benchmark of BENCHMARKS.md (exporter):
// snatrace exporter and Debian's prometheus-node-exporter (conntrack collector
// only), each started on a free 127.0.0.1 port, scraped the same number of
// times, alternately; it prints latency percentiles and RSS. It runs
// only when SNATRACE_BENCH_EXPORTER is set (the number of scrapes).
func TestCompareNodeExporter(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SNATRACE_BENCH_EXPORTER"))
	if n <= 0 {
		t.Skip("benchmark: set SNATRACE_BENCH_EXPORTER=<scrapes>")
	}
	ne, err := exec.LookPath("prometheus-node-exporter")
	if err != nil {
		t.Skip("needs prometheus-node-exporter:", err)
	}
	bin := filepath.Join(t.TempDir(), "snatrace")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/snatrace").CombinedOutput(); err != nil {
		t.Fatalf("building snatrace: %v\n%s", err, out)
	}
	type target struct {
		name string
		argv func(addr string) []string
		cmd  *exec.Cmd
		url  string
		lat  []time.Duration
		body int
	}
	targets := []*target{
		{name: "snatrace exporter --no-audit", argv: func(a string) []string { return []string{bin, "exporter", "--no-audit", "--listen", a} }},
		{name: "prometheus-node-exporter --collector.disable-defaults --collector.conntrack", argv: func(a string) []string {
			return []string{ne, "--collector.disable-defaults", "--collector.conntrack", "--web.listen-address", a}
		}},
	}
	client := &http.Client{Timeout: 5 * time.Second}
	scrapeOnce := func(url string) (int, error) {
		resp, err := client.Get(url)
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
	for _, tg := range targets {
		addr := freeAddr(t)
		argv := tg.argv(addr)
		tg.cmd = exec.Command(argv[0], argv[1:]...)
		if err := tg.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := tg.cmd
		t.Cleanup(func() { c.Process.Kill(); c.Wait() }) // by PID: the process we started
		tg.url = "http://" + addr + "/metrics"
		var err error
		for i := 0; i < 100; i++ {
			if _, err = scrapeOnce(tg.url); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s did not come up on %s: %v", tg.name, addr, err)
		}
	}
	// Alternate the scrapes, so that noise from the rest of the machine hits
	// both exporters alike.
	for range n {
		for _, tg := range targets {
			start := time.Now()
			k, err := scrapeOnce(tg.url)
			if err != nil {
				t.Fatal(err)
			}
			tg.lat = append(tg.lat, time.Since(start))
			tg.body = k
		}
	}
	type result struct {
		name           string
		p50, p99, max  time.Duration
		rss, hwm, body int
	}
	var results []result
	for _, tg := range targets {
		pid := tg.cmd.Process.Pid
		lat := tg.lat
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		results = append(results, result{tg.name, lat[n/2], lat[n*99/100], lat[n-1],
			procStatus(t, pid, "VmRSS:"), procStatus(t, pid, "VmHWM:"), tg.body})
	}
	fmt.Printf("| exporter | scrapes | p50 | p99 | max | RSS after | peak RSS | body bytes |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %d | %v | %v | %v | %.1f MiB | %.1f MiB | %d |\n", r.name, n,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond),
			float64(r.rss)/1024, float64(r.hwm)/1024, r.body)
	}
	a, b := results[0], results[1]
	fmt.Printf("\nratios snatrace/node_exporter: p50 %.2f, p99 %.2f, RSS %.2f\n",
		float64(a.p50)/float64(b.p50), float64(a.p99)/float64(b.p99), float64(a.rss)/float64(b.rss))
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procStatus returns a kB field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) int {
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
