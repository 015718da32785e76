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
		{"netlink", WithConntrack(func() (ctstat.Snapshot, error) { return ctstat.ReadNetlink(0) }, nil, nil)},
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

// TestCompareNodeExporter is the side-by-side benchmark of docs/bench-exporter.md:
// snatrace exporter and Debian's prometheus-node-exporter (conntrack collector
// only), each started on a free 127.0.0.1 port, scraped the same number of
// times one after the other; it prints latency percentiles and RSS. It runs
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
	type result struct {
		name           string
		p50, p99, max  time.Duration
		rss, hwm, body int
	}
	var results []result
	for _, c := range []struct {
		name string
		argv func(addr string) []string
	}{
		{"snatrace exporter --no-audit", func(a string) []string { return []string{bin, "exporter", "--no-audit", "--listen", a} }},
		{"prometheus-node-exporter --collector.disable-defaults --collector.conntrack", func(a string) []string {
			return []string{ne, "--collector.disable-defaults", "--collector.conntrack", "--web.listen-address", a}
		}},
	} {
		addr := freeAddr(t)
		argv := c.argv(addr)
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		stop := func() { cmd.Process.Kill(); cmd.Wait() } // by PID, the process we started
		url := "http://" + addr + "/metrics"
		client := &http.Client{Timeout: 5 * time.Second}
		ready := false
		for i := 0; i < 100 && !ready; i++ {
			if resp, err := client.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
			if !ready {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !ready {
			stop()
			t.Fatalf("%s did not come up on %s", c.name, addr)
		}
		lat := make([]time.Duration, 0, n)
		body := 0
		for range n {
			start := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				stop()
				t.Fatal(err)
			}
			k, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(start))
			body = int(k)
		}
		rss, hwm := procStatus(t, pid, "VmRSS:"), procStatus(t, pid, "VmHWM:")
		stop()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		results = append(results, result{c.name, lat[n/2], lat[n*99/100], lat[n-1], rss, hwm, body})
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
