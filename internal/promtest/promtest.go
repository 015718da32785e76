//go:build linux

// Package promtest starts a real Prometheus (Debian's prometheus package)
// for tests: its configuration, rules and data under the test's directory,
// listening on a loopback address of a given network namespace (nil: the
// test's own), stopped by its PID when the test ends. Tests talk to it
// through the client_golang API, as users and snatrace top do.
package promtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
)

// Target is one exporter to scrape and the node it stands for (the label
// the ServiceMonitor adds from the pod's node name).
type Target struct {
	Addr string // host:port
	Node string
}

// Config is what the Prometheus of a test does.
type Config struct {
	Targets []Target
	// Interval is the scrape and rule evaluation interval (default 1 s).
	Interval time.Duration
	// Rules is the content of one rules file, or "".
	Rules string
}

// Prometheus is a running Prometheus.
type Prometheus struct {
	URL    string // http://127.0.0.1:port
	API    v1.API
	Client api.Client
	ns     *netns.NS
	log    string
}

// Start starts Prometheus in ns (nil: the caller's namespace) on a free
// 127.0.0.1 port and waits until it is ready. It skips t (fails it in CI)
// without the prometheus binary.
func Start(t testing.TB, ns *netns.NS, cfg Config) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Skip(t, "needs prometheus (Debian package prometheus; .ci/run installs it)")
	}
	dir := t.TempDir()
	p := &Prometheus{ns: ns, log: filepath.Join(dir, "prometheus.log")}
	conf, err := writeConfig(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort(ns)
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	p.URL = "http://" + listen
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := p.do(cmd.Start); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	p.Client, err = api.NewClient(api.Config{Address: p.URL, RoundTripper: p.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	p.API = v1.NewAPI(p.Client)
	if err := p.waitReady(done); err != nil {
		t.Fatalf("%v; log:\n%s", err, p.Log())
	}
	return p
}

// writeConfig writes prometheus.yml (and rules.yml) into dir.
func writeConfig(dir string, cfg Config) (string, error) {
	iv := cfg.Interval
	if iv <= 0 {
		iv = time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n", iv, iv, iv)
	if cfg.Rules != "" {
		rules := filepath.Join(dir, "rules.yml")
		if err := os.WriteFile(rules, []byte(cfg.Rules), 0o644); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "rule_files: [%q]\n", rules)
	}
	b.WriteString("scrape_configs:\n  - job_name: snatrace\n    static_configs:\n")
	for _, tg := range cfg.Targets {
		fmt.Fprintf(&b, "      - targets: [%q]\n        labels: {node: %q}\n", tg.Addr, tg.Node)
	}
	conf := filepath.Join(dir, "prometheus.yml")
	return conf, os.WriteFile(conf, []byte(b.String()), 0o644)
}

// waitReady polls /-/ready for 30 s, or until the process ends.
func (p *Prometheus) waitReady(done <-chan struct{}) error {
	c := http.Client{Timeout: time.Second, Transport: p.Transport()}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("prometheus exited")
		default:
		}
		if resp, err := c.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("prometheus not ready in 30 s")
}

// Transport dials from inside the namespace Prometheus runs in.
func (p *Prometheus) Transport() http.RoundTripper {
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = p.do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
		return c, err
	}}
}

// Log returns what Prometheus logged.
func (p *Prometheus) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *Prometheus) do(f func() error) error {
	if p.ns == nil {
		return f()
	}
	return p.ns.Do(f)
}

// freePort returns a TCP port free on 127.0.0.1 in ns.
func freePort(ns *netns.NS) (int, error) {
	var port int
	f := func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	}
	if ns == nil {
		return port, f()
	}
	return port, ns.Do(f)
}
