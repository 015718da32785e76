//go:build linux

package deploy

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/snatrace/snatrace/internal/podmantest"
	"github.com/snatrace/snatrace/internal/promtest"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
)

// benchNode is a racing lab node with the exporter container running as the
// DaemonSet runs it (real audit interval), for the benchmarks below.
func benchNode(b *testing.B) (*lab.Session, *podmantest.Podman, string, podSpec) {
	b.Helper()
	testenv.NeedRoot(b, "builds an image and runs it in a lab node")
	ps := loadPod(b)
	s, _ := labtest.Node(b, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	p := podmantest.New(b, shortDir(b, "bench"), s.Node())
	ref := buildImage(b, p)
	args := append(append(append([]string{"run", "-d", "--name", "exporter"}, ps.runArgs(b, podIP)...), ref), ps.containerArgs(podIP, "60s")...)
	p.Run(b, args...)
	return s, p, fmt.Sprintf("%s:%d", podIP, ps.c.Ports[0].ContainerPort), ps
}

// procUsage is a process's CPU time (user+system) and resident memory.
type procUsage struct {
	cpu      time.Duration
	rss, hwm int64 // bytes
}

// usageOf reads /proc/PID/stat and /proc/PID/status.
func usageOf(b *testing.B, pid string) procUsage {
	b.Helper()
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)                      // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)                      // stime, field 15
	u := procUsage{cpu: time.Duration(ut+st) * time.Second / 100} // USER_HZ
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		var v int64
		if n, _ := fmt.Sscanf(l, "VmRSS: %d kB", &v); n == 1 {
			u.rss = v << 10
		}
		if n, _ := fmt.Sscanf(l, "VmHWM: %d kB", &v); n == 1 {
			u.hwm = v << 10
		}
	}
	return u
}

// BenchmarkImageExporter measures the exporter inside its container, run
// as the DaemonSet runs it: CPU (user+system over wall time) and RSS over
// 60 s of an idle node, then over 60 s of same-port bursts on the node (a
// few thousand connections per second, SNAT clashes among them), scraped
// every second in both phases (30x the ServiceMonitor's rate). Run:
//
//	go test ./deploy -run '^$' -bench ImageExporter -benchtime 1x -timeout 10m
func BenchmarkImageExporter(b *testing.B) {
	s, p, target, _ := benchNode(b)
	pid := p.Run(b, "inspect", "--format", "{{.State.Pid}}", "exporter")
	prom := promtest.Start(b, s.Node(), promtest.Config{Targets: []promtest.Target{{Addr: target, Node: "bench"}}})
	time.Sleep(5 * time.Second) // the first audit, the first scrapes
	for _, phase := range []string{"idle", "burst"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		u0, t0 := usageOf(b, pid), time.Now()
		conns, clashes := 0, uint64(0)
		if phase == "burst" {
			for ctx.Err() == nil {
				r, err := s.Round(ctx, 2000, 0)
				if err != nil && ctx.Err() == nil {
					b.Fatal(err)
				}
				if r != nil {
					conns += r.Connections
					clashes += r.Conntrack.InsertFailed
				}
			}
		}
		<-ctx.Done()
		cancel()
		u1, wall := usageOf(b, pid), time.Since(t0)
		b.ReportMetric(100*float64(u1.cpu-u0.cpu)/float64(wall), phase+"-cpu-%")
		b.ReportMetric(float64(u1.rss)/(1<<20), phase+"-rss-MiB")
		b.ReportMetric(float64(u1.hwm)/(1<<20), phase+"-peak-rss-MiB")
		// The share of the phase's scrapes that succeeded within the 1 s
		// timeout (the container has 0.2 CPU).
		up := query(b, prom, fmt.Sprintf("avg_over_time(up[%ds])", int(wall.Seconds())))
		if v, ok := up.(model.Vector); ok && len(v) == 1 {
			b.ReportMetric(100*float64(v[0].Value), phase+"-scrapes-ok-%")
		}
		if phase == "burst" {
			b.ReportMetric(float64(conns)/wall.Seconds(), "burst-conn/s")
			b.ReportMetric(float64(clashes), "burst-clashes")
		}
	}
	if st := p.Run(b, "inspect", "--format", "{{.State.Running}} {{.State.OOMKilled}}", "exporter"); st != "true false" {
		b.Fatalf("the exporter container: running, OOM-killed = %s", st)
	}
}

// BenchmarkAlertLatency measures the time from the first SNAT clash to the
// clash alert firing, with the shipped rules unchanged (for: 5m) and the
// ServiceMonitor's 30 s scrape interval, evaluated every 30 s (the Prometheus
// Operator's default), on a node that keeps racing: 300 same-port
// connections every 10 s, a few clashes each. (A single burst never fires
// it: rate(...[5m]) stays positive 5m minus one scrape interval, less than
// the for: 5m; snatrace.rules.test.yml has that case.) About 7 minutes. Run:
//
//	go test ./deploy -run '^$' -bench AlertLatency -benchtime 1x -timeout 15m
func BenchmarkAlertLatency(b *testing.B) {
	s, _, target, _ := benchNode(b)
	rules, err := os.ReadFile("prometheus/snatrace.rules.yml")
	if err != nil {
		b.Fatal(err)
	}
	prom := promtest.Start(b, s.Node(), promtest.Config{Interval: 30 * time.Second, Rules: string(rules),
		Targets: []promtest.Target{{Addr: target, Node: "bench"}}})
	time.Sleep(65 * time.Second) // two scrapes before the clashes
	ctx, cancel := context.WithCancel(context.Background())
	firstClash := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			t0 := time.Now()
			r, err := s.Round(ctx, 300, 0)
			if err == nil && r.Conntrack.InsertFailed > 0 {
				select {
				case firstClash <- t0: // the round's start: the clash is no earlier
				default:
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(10*time.Second - time.Since(t0)):
			}
		}
	}()
	defer func() { cancel(); <-done }()
	start := <-firstClash
	firstClash <- start
	var pending time.Duration
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		st, _ := alertState(b, prom, "SnatraceSNATClashes", "bench")
		if st == v1.AlertStatePending && pending == 0 {
			pending = time.Since(start)
		}
		if st == v1.AlertStateFiring {
			b.ReportMetric(pending.Seconds(), "s-to-pending")
			b.ReportMetric(time.Since(start).Seconds(), "s-to-firing")
			return
		}
		time.Sleep(time.Second)
	}
	b.Fatalf("the clash alert did not fire in 10 minutes")
}
