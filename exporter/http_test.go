package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/netns"
)

// serve starts e on a random 127.0.0.1 port and returns the metrics URL.
func serve(t *testing.T, e *Exporter, o HandlerOpts, webConfig string) string {
	t.Helper()
	h, err := NewHandler(e, o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, h, webConfig, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String() + MetricsPath
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHTTPUnreadableSources: /proc unreadable and ctnetlink EPERM, over HTTP:
// the response is 200 with the other metrics and the errors set.
func TestHTTPUnreadableSources(t *testing.T) {
	e := New(WithConntrack(failing(errEPERM), failing(errProc), maxOf(0, errProc)),
		WithAudit(testAudit(), time.Minute), WithKernelRelease("6.18.44-fc-v769"), build)
	if err := e.RefreshAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := serve(t, e, HandlerOpts{}, "")
	code, body := get(t, http.DefaultClient, url)
	if code != http.StatusOK {
		t.Fatalf("status %d\n%s", code, body)
	}
	fams := parseExposition(t, []byte(body))
	for _, src := range []string{"netlink", "proc", "max"} {
		if v := gauge(t, fams, "snatrace_scrape_error", map[string]string{"source": src}); v != 1 {
			t.Errorf("scrape_error{%s} = %v, want 1", src, v)
		}
	}
	if v := gauge(t, fams, "snatrace_snat_rules", map[string]string{"owner": "docker"}); v != 2 {
		t.Errorf("rules still exported: %v, want 2", v)
	}
	for _, name := range []string{"snatrace_build_info", "snatrace_kernel_info", "process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	if _, ok := fams["snatrace_conntrack_drop_total"]; ok {
		t.Errorf("conntrack counters exported without a source")
	}
}

// TestHTTPConcurrentScrapesBounded: 200 concurrent scrapes all get an answer
// (200, or 503 beyond the in-flight limit) and leave no goroutines or heap
// behind.
func TestHTTPConcurrentScrapesBounded(t *testing.T) {
	slow := func() (ctstat.Snapshot, error) { // every scrape holds the kernel read a little
		time.Sleep(time.Millisecond)
		return procSnap(t, "proc-4.19.txt"), nil
	}
	e := New(WithConntrack(slow, nil, maxOf(65536, nil)), WithKernelRelease("6.18.0"))
	url := serve(t, e, HandlerOpts{MaxRequestsInFlight: 10}, "")
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get(t, c, url) // warm up

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	const n = 200
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && !strings.Contains(string(b), `snatrace_conntrack_insert_failed_total{cpu="3"} 49`) {
				t.Errorf("incomplete scrape:\n%s", b)
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	tr.CloseIdleConnections()
	if codes[http.StatusOK]+codes[http.StatusServiceUnavailable] != n || codes[http.StatusOK] == 0 {
		t.Errorf("status codes %v, want only 200 and 503", codes)
	}
	// Let the server's connection goroutines finish.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines+5 {
		t.Errorf("%d goroutines after the scrapes, %d before", g, goroutines)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 8<<20 {
		t.Errorf("heap grew by %d bytes over %d scrapes", grow, n)
	}
	t.Logf("status codes %v; heap %d -> %d bytes", codes, before.HeapAlloc, after.HeapAlloc)
}

// TestHTTPBasicAuth serves with an exporter-toolkit web config requiring basic
// auth (user snatrace, password "secret", bcrypt cost 4).
func TestHTTPBasicAuth(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web.yml")
	const hash = "$2a$04$d6PuL169l/xq9zsbYc//rudm4wexYSHAypnnuUh0fIoC1eWFoa/2a"
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  snatrace: "+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ValidateWebConfig(cfg); err != nil {
		t.Fatal(err)
	}
	e := New(WithoutConntrack(), WithKernelRelease("6.18.0"))
	url := serve(t, e, HandlerOpts{}, cfg)
	if code, _ := get(t, http.DefaultClient, url); code != http.StatusUnauthorized {
		t.Errorf("without credentials: status %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("snatrace", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with credentials: status %d, want 200", resp.StatusCode)
	}
}

func TestValidateWebConfigBad(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web.yml")
	os.WriteFile(cfg, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n"), 0o600)
	err := ValidateWebConfig(cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "checking web config "+cfg+": ") {
		t.Errorf("error %v", err)
	}
}

// TestHTTPRealReadersFailing uses the real ctstat readers on things that are
// not there: a ctnetlink socket in a namespace that was closed, a missing
// /proc file and a missing nf_conntrack_max.
func TestHTTPRealReadersFailing(t *testing.T) {
	closed, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // a namespace whose descriptor is gone: dialling in it fails
	dir := t.TempDir()
	e := New(WithConntrack(
		func() (ctstat.Snapshot, error) { return ctstat.ReadNetlink(closed) },
		func() (ctstat.Snapshot, error) { return ctstat.ReadProc(filepath.Join(dir, "nf_conntrack")) },
		func() (uint64, error) { return ctstat.ReadMax(filepath.Join(dir, "nf_conntrack_max")) },
	), WithKernelRelease("6.18.44-fc-v769"), build)
	url := serve(t, e, HandlerOpts{}, "")
	for range 2 {
		code, body := get(t, http.DefaultClient, url)
		if code != http.StatusOK {
			t.Fatalf("status %d\n%s", code, body)
		}
		fams := parseExposition(t, []byte(body))
		for _, src := range []string{"netlink", "proc", "max"} {
			if v := gauge(t, fams, "snatrace_scrape_error", map[string]string{"source": src}); v != 1 {
				t.Errorf("scrape_error{%s} = %v, want 1", src, v)
			}
		}
		if v := gauge(t, fams, "snatrace_kernel_info", map[string]string{"era": "6.5"}); v != 1 {
			t.Errorf("kernel_info missing")
		}
	}
}

// TestHTTPCompression: a scraper that accepts gzip (Prometheus does) gets
// the exposition gzipped (at the fastest level: a third of a scrape was
// default-level deflate) with Vary set; one that accepts zstd gets zstd;
// one that accepts neither gets it plain; all carry the same metrics.
func TestHTTPCompression(t *testing.T) {
	e := New(WithAudit(testAudit(), time.Minute), WithKernelRelease("6.18.44"), build)
	if err := e.RefreshAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := serve(t, e, HandlerOpts{}, "")
	scrape := func(enc string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept-Encoding %q: status %d, %v", enc, resp.StatusCode, err)
		}
		return resp, b
	}
	zresp, zbody := scrape("gzip")
	if ce := zresp.Header.Get("Content-Encoding"); ce != "gzip" || !slices.Contains(zresp.Header.Values("Vary"), "Accept-Encoding") {
		t.Fatalf("gzip accepted: Content-Encoding %q, Vary %q", ce, zresp.Header.Values("Vary"))
	}
	if len(zbody) < 10 || zbody[8] != 4 { // RFC 1952 XFL 4: the fastest algorithm
		t.Errorf("gzip header %x: not written at the fastest level", zbody[:min(len(zbody), 10)])
	}
	unzipped := decompress(t, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }, zbody)
	sresp, sbody := scrape("zstd")
	if ce := sresp.Header.Get("Content-Encoding"); ce != "zstd" {
		t.Fatalf("zstd accepted: Content-Encoding %q", ce)
	}
	unzstd := decompress(t, func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) }, sbody)
	presp, plain := scrape("")
	if ce := presp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("no encoding accepted: Content-Encoding %q", ce)
	}
	zf, sf, pf := parseExposition(t, unzipped), parseExposition(t, unzstd), parseExposition(t, plain)
	if len(zf) != len(pf) || len(sf) != len(pf) || len(zf) < 10 {
		t.Errorf("metric families: gzipped %d, zstd %d, plain %d", len(zf), len(sf), len(pf))
	}
	if v := gauge(t, zf, "snatrace_snat_rules", map[string]string{"owner": "docker"}); v != 2 {
		t.Errorf("gzipped snatrace_snat_rules{owner=docker} = %v, want 2", v)
	}
}

// decompress reads body through the reader open makes of it.
func decompress(t *testing.T, open func(io.Reader) (io.Reader, error), body []byte) []byte {
	t.Helper()
	r, err := open(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
