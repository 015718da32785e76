package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/ctstat/ctstattest"
	goldenfile "github.com/snatrace/snatrace/internal/golden"
)

func procReader(t *testing.T, file string) SnapshotFunc {
	t.Helper()
	s, err := ctstat.ReadProc(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return func() (ctstat.Snapshot, error) { return s, nil }
}

// netlinkReader replays ctnetlink replies recorded from Linux 6.18, with the
// entry count and table size a CTA_STATS reply would add.
func netlinkReader(t *testing.T, file string, entries, max uint64) SnapshotFunc {
	t.Helper()
	msgs := ctstattest.Recorded(t, filepath.Join("testdata", file))
	cpus, err := ctstat.DecodeStatsCPU(msgs)
	if err != nil {
		t.Fatal(err)
	}
	s := ctstat.Snapshot{Source: ctstat.SourceNetlink, Entries: entries, Max: max, CPUs: cpus}
	return func() (ctstat.Snapshot, error) { return s, nil }
}

func failing(err error) SnapshotFunc {
	return func() (ctstat.Snapshot, error) { return ctstat.Snapshot{}, err }
}

func maxOf(v uint64, err error) MaxFunc { return func() (uint64, error) { return v, err } }

var (
	errEPERM = fmt.Errorf("querying ctnetlink per-CPU statistics: %w", syscall.EPERM)
	errProc  = fmt.Errorf("reading conntrack statistics: %w", &os.PathError{Op: "open", Path: ctstat.ProcPath, Err: syscall.EACCES})
	build    = WithBuildInfo(BuildInfo{Version: "v0.1.0", Revision: "abc123", GoVersion: "go1.26.8"})
)

func testAudit() AuditFunc {
	return func(context.Context) (AuditResult, error) {
		return AuditResult{
			Rules: []AuditRule{
				{Owner: "docker", Backend: "iptables-nft", Randomness: RandomnessNone},
				{Owner: "docker", Backend: "iptables-nft", Randomness: RandomnessNone},
				{Owner: "kube-proxy", Backend: "iptables-legacy", Randomness: RandomnessFullyRandom},
			},
			Findings: []AuditFinding{
				{Severity: "high", Kind: "snat-port-preservation"},
				{Severity: "high", Kind: "snat-port-preservation"},
				{Severity: "info", Kind: "clash-counters-zero"},
			},
		}, nil
	}
}

// fixedClock returns 2026-11-26T01:00:00Z, then one second later each call.
func fixedClock() func() time.Time {
	t := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

// TestCollectorGolden scrapes recorded statistics of each /proc header era and
// of ctnetlink, with sources failing in turn, and compares the whole
// exposition with testdata/<name>.prom.
func TestCollectorGolden(t *testing.T) {
	tests := []struct {
		name  string
		opts  func(t *testing.T) []Option
		audit bool
	}{
		{"proc-4.19-netlink-eperm", func(t *testing.T) []Option {
			return []Option{WithConntrack(failing(errEPERM), procReader(t, "proc-4.19.txt"), maxOf(65536, nil)),
				WithKernelRelease("4.19.0-27-amd64")}
		}, false},
		{"proc-5.10", func(t *testing.T) []Option {
			return []Option{WithConntrack(nil, procReader(t, "proc-5.10.txt"), maxOf(131072, nil)),
				WithKernelRelease("5.10.0-30-amd64")}
		}, false},
		{"proc-6.18-max-unreadable", func(t *testing.T) []Option {
			return []Option{WithConntrack(failing(errEPERM), procReader(t, "proc-6.18.txt"), maxOf(0, errProc)),
				WithKernelRelease("6.18.44-fc-v769")}
		}, false},
		{"netlink-6.18-audit", func(t *testing.T) []Option {
			return []Option{WithConntrack(netlinkReader(t, "netlink-6.18.hex", 5, 262144), failing(errors.New("unused")), maxOf(0, errors.New("unused"))),
				WithKernelRelease("6.18.44-fc-v769")}
		}, true},
		{"all-sources-failing", func(t *testing.T) []Option {
			return []Option{WithConntrack(failing(errEPERM), failing(errProc), maxOf(0, errProc)),
				WithKernelRelease("6.1.0-13-amd64"),
				WithAudit(func(context.Context) (AuditResult, error) { return AuditResult{}, errors.New("nft: permission denied") }, time.Minute)}
		}, true},
		{"audit-only", func(t *testing.T) []Option {
			return []Option{WithoutConntrack(), WithKernelRelease("5.4.0-150-generic")}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]Option{build, WithClock(fixedClock())}, tt.opts(t)...)
			if tt.audit && !hasAudit(opts) {
				opts = append(opts, WithAudit(testAudit(), time.Minute))
			}
			e := New(opts...)
			if err := e.RefreshAudit(context.Background()); err != nil && tt.name != "all-sources-failing" {
				t.Fatal(err)
			}
			got := exposition(t, e)
			golden := filepath.Join("testdata", tt.name+".prom")
			goldenfile.Check(t, golden, got)
		})
	}
}

func hasAudit(opts []Option) bool {
	e := &Exporter{}
	for _, o := range opts {
		o(e)
	}
	return e.audit != nil
}

// TestCollectorMatchesSnapshot checks the golden expositions independently of
// how they were recorded: every per-CPU counter equals ctstat's reading.
func TestCollectorMatchesSnapshot(t *testing.T) {
	for _, file := range []string{"proc-4.19.txt", "proc-5.10.txt", "proc-6.18.txt"} {
		t.Run(file, func(t *testing.T) {
			snap, err := ctstat.ReadProc(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			e := New(WithConntrack(nil, procReader(t, file), maxOf(1000, nil)), WithKernelRelease("6.18.0"))
			fams := scrapeFamilies(t, e)
			checkAgainst(t, fams, snap)
			if v := gauge(t, fams, "snatrace_conntrack_max", nil); v != 1000 {
				t.Errorf("max %v, want 1000", v)
			}
		})
	}
}

func scrapeFamilies(t *testing.T, e *Exporter) map[string]*dto.MetricFamily {
	t.Helper()
	return parseExposition(t, exposition(t, e))
}

// exposition scrapes e alone, through a pedantic registry, in the text format.
func exposition(t *testing.T, e prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(e); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func parseExposition(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing exposition: %v\n%s", err, b)
	}
	return fams
}

// checkAgainst asserts that the per-CPU counters and entries of fams equal snap.
func checkAgainst(t *testing.T, fams map[string]*dto.MetricFamily, snap ctstat.Snapshot) {
	t.Helper()
	for _, c := range snap.CPUs {
		cpu := map[string]string{"cpu": fmt.Sprint(c.CPU)}
		for _, cc := range cpuCounters {
			name := "snatrace_conntrack_" + cc.name + "_total"
			if got, want := counter(t, fams, name, cpu), float64(cc.get(c.Counters)); got != want {
				t.Errorf("%s{cpu=%d} = %v, ctstat read %v", name, c.CPU, got, want)
			}
		}
	}
	if n := len(fams["snatrace_conntrack_drop_total"].GetMetric()); n != len(snap.CPUs) {
		t.Errorf("%d CPUs exported, ctstat read %d", n, len(snap.CPUs))
	}
	if got := gauge(t, fams, "snatrace_conntrack_entries", nil); got != float64(snap.Entries) {
		t.Errorf("entries %v, ctstat read %d", got, snap.Entries)
	}
}

func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

func counter(t *testing.T, f map[string]*dto.MetricFamily, n string, l map[string]string) float64 {
	return find(t, f, n, l).GetCounter().GetValue()
}

func gauge(t *testing.T, f map[string]*dto.MetricFamily, n string, l map[string]string) float64 {
	return find(t, f, n, l).GetGauge().GetValue()
}

// TestSourceFailureLoggedAndCounted: a failing source is logged once when it
// starts failing and once when it recovers, and counted on every scrape.
func TestSourceFailureLoggedAndCounted(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	fail := true
	good := procReader(t, "proc-6.18.txt")
	nl := func() (ctstat.Snapshot, error) {
		if fail {
			return ctstat.Snapshot{}, errEPERM
		}
		s, _ := good()
		s.Source = ctstat.SourceNetlink
		s.Max = 10
		return s, nil
	}
	e := New(WithConntrack(nl, good, maxOf(7, nil)), WithLogger(log), WithKernelRelease("6.18.0"))
	for range 3 {
		scrapeFamilies(t, e)
	}
	fams := scrapeFamilies(t, e)
	if v := counter(t, fams, "snatrace_scrape_errors_total", map[string]string{"source": "netlink"}); v != 4 {
		t.Errorf("netlink errors_total %v, want 4", v)
	}
	if v := gauge(t, fams, "snatrace_scrape_error", map[string]string{"source": "netlink"}); v != 1 {
		t.Errorf("netlink scrape_error %v, want 1", v)
	}
	if v := gauge(t, fams, "snatrace_conntrack_stats_source", map[string]string{"source": "proc"}); v != 1 {
		t.Errorf("stats_source{proc} %v, want 1", v)
	}
	fail = false
	fams = scrapeFamilies(t, e)
	if v := gauge(t, fams, "snatrace_scrape_error", map[string]string{"source": "netlink"}); v != 0 {
		t.Errorf("netlink scrape_error after recovery %v, want 0", v)
	}
	if v := gauge(t, fams, "snatrace_conntrack_max", nil); v != 10 {
		t.Errorf("max %v, want 10 from ctnetlink", v)
	}
	want := "level=WARN msg=\"source failing\" source=netlink err=\"querying ctnetlink per-CPU statistics: operation not permitted\"\n" +
		"level=INFO msg=\"source recovered\" source=netlink\n"
	if logBuf.String() != want {
		t.Errorf("log\n%s\nwant\n%s", logBuf.String(), want)
	}
}

// TestAuditKeepsLastResult: a failed refresh keeps the previous rules and
// findings exported and sets the audit error.
func TestAuditKeepsLastResult(t *testing.T) {
	calls := 0
	audit := func(ctx context.Context) (AuditResult, error) {
		calls++
		if calls == 2 {
			return AuditResult{}, errors.New("iptables-save: exit status 1")
		}
		return testAudit()(ctx)
	}
	e := New(WithoutConntrack(), WithAudit(audit, time.Minute), WithClock(fixedClock()), WithKernelRelease("6.18.0"))
	if err := e.RefreshAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := e.RefreshAudit(context.Background())
	if want := "refreshing audit: iptables-save: exit status 1"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	fams := scrapeFamilies(t, e)
	if v := gauge(t, fams, "snatrace_snat_rules", map[string]string{"owner": "docker", "randomness": "none"}); v != 2 {
		t.Errorf("docker rules %v, want 2 kept from the first audit", v)
	}
	if v := gauge(t, fams, "snatrace_scrape_error", map[string]string{"source": "audit"}); v != 1 {
		t.Errorf("audit error %v, want 1", v)
	}
	// 01:00:02 is when the first audit finished (the clock ticks one second per call).
	if v := gauge(t, fams, "snatrace_audit_last_success_timestamp_seconds", nil); v != float64(time.Date(2026, 11, 26, 1, 0, 2, 0, time.UTC).Unix()) {
		t.Errorf("last success %v", v)
	}
}

// TestRunRefreshesUntilCancelled runs the loop with a short interval.
func TestRunRefreshesUntilCancelled(t *testing.T) {
	n := make(chan struct{}, 100)
	audit := func(context.Context) (AuditResult, error) { n <- struct{}{}; return AuditResult{}, nil }
	e := New(WithoutConntrack(), WithAudit(audit, time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	for range 3 {
		<-n
	}
	cancel()
	<-done
}

func TestKernelEra(t *testing.T) {
	tests := []struct{ release, era, err string }{
		{"3.10.0-1160.el7.x86_64", EraLegacy, ""},
		{"4.19.0-27-amd64", EraLegacy, ""},
		{"5.0.0", Era50, ""},
		{"5.4-rc1", Era50, ""},
		{"6.4.16", Era50, ""},
		{"6.5.0-1-generic", Era65, ""},
		{"6.18.44-fc-v769", Era65, ""},
		{"7.0", Era65, ""},
		{"5.15.153.1-microsoft-standard-WSL2", Era50, ""},
		{"", EraUnknown, `parsing kernel version "": want MAJOR.MINOR[.PATCH], got "" at part 1`},
		{"six.1", EraUnknown, `parsing kernel version "six.1": want MAJOR.MINOR[.PATCH], got "six.1" at part 1`},
		{"6.x", EraUnknown, `parsing kernel version "6.x": want MAJOR.MINOR[.PATCH], got "x" at part 2`},
	}
	for _, tt := range tests {
		era, err := KernelEra(tt.release)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if era != tt.era || gotErr != tt.err {
			t.Errorf("KernelEra(%q) = %q, %q; want %q, %q", tt.release, era, gotErr, tt.era, tt.err)
		}
	}
}

func FuzzKernelEra(f *testing.F) {
	f.Add("6.18.44-fc-v769")
	f.Add("4.19")
	f.Fuzz(func(t *testing.T, s string) {
		era, err := KernelEra(s)
		if (err != nil) != (era == EraUnknown) {
			t.Fatalf("KernelEra(%q) = %q, %v", s, era, err)
		}
	})
}

func procSnap(t *testing.T, file string) ctstat.Snapshot {
	t.Helper()
	s, err := ctstat.ReadProc(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRefreshReturnsMemory runs an audit that allocates 64 MiB for a
// moment, as the read of a large iptables-legacy table does: after the
// refresh, the runtime holds no more than a few MiB of freed heap that
// it has not given back to the system.
func TestRefreshReturnsMemory(t *testing.T) {
	audit := func(context.Context) (AuditResult, error) {
		auditGarbage = make([]byte, 64<<20)
		for i := 0; i < len(auditGarbage); i += 4096 {
			auditGarbage[i] = 1 // touch every page: resident
		}
		auditGarbage = nil
		return AuditResult{}, nil
	}
	e := New(WithoutConntrack(), WithAudit(audit, time.Minute), WithClock(fixedClock()), WithKernelRelease("6.18.0"))
	e.refresh(context.Background(), "test")
	runtime.GC() // without the refresh's own collection, the audit's garbage is freed here, and kept
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if kept := m.HeapIdle - m.HeapReleased; kept > 16<<20 {
		t.Errorf("after the audit the runtime keeps %d MiB of freed heap from the system", kept>>20)
	}
}

// auditGarbage is what TestRefreshReturnsMemory's audit allocates.
var auditGarbage []byte
