//go:build linux

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/podmantest"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
)

// podIP stands for the node address under hostNetwork: the lab node's
// loopback, where the test and its Prometheus reach the exporter.
const podIP = "127.0.0.1"

// TestImageAsDaemonSet builds the image offline with deploy/image/build.sh,
// then runs it as kubernetes/daemonset.yaml runs it, in a racing lab node
// (Podman in the node namespace, so the container's host network is the
// node's): the manifest's user and capabilities, read-only root, no new
// privileges, its limits and args. In that container audit attributes the
// node's rules of three backends to their owners, and the exporter's
// insert_failed delta over a same-port burst is the kernel's; without the
// capabilities it says what fails in a metric and a log line. Then a real
// Prometheus with the shipped rules scrapes it (TestImageAsDaemonSet/alerts).
func TestImageAsDaemonSet(t *testing.T) {
	testenv.NeedRoot(t, "builds an image and runs it in a lab node")
	ps := loadPod(t)
	s, _ := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	ownedRules(t, s.Node())
	p := podmantest.New(t, shortDir(t, "image"), s.Node())
	ref := buildImage(t, p)
	imageFacts(t, p, ref, ps)

	t.Run("audit", func(t *testing.T) { containerAudit(t, p, ref, ps) })
	port := ps.c.Ports[0].ContainerPort
	url := fmt.Sprintf("http://%s:%d/metrics", podIP, port)
	p.Run(t, append(append(append([]string{"run", "-d", "--name", "exporter"}, ps.runArgs(t, podIP)...), ref),
		ps.containerArgs(podIP, "1s")...)...)
	waitContainerAudit(t, p, "exporter", s.Node(), url)
	t.Run("burst", func(t *testing.T) { containerBurst(t, s, url) })
	t.Run("unprivileged", func(t *testing.T) { unprivileged(t, p, ref, ps, s.Node()) })
	t.Run("alerts", func(t *testing.T) { alerts(t, p, ref, ps, s, fmt.Sprintf("%s:%d", podIP, port)) })
}

// containerAudit runs snatrace audit in the container: each backend's rule
// is found and attributed to its owner, and nothing failed to read.
func containerAudit(t *testing.T, p *podmantest.Podman, ref string, ps podSpec) {
	args := append(append([]string{"run", "--rm"}, ps.runArgs(t, podIP)...), ref, "audit", "--json", "--interval", "0")
	out, err := p.Exec(args...)
	var rep struct {
		Rules []struct {
			Backend, Owner string
			FullyRandom    bool `json:"fully_random"`
		}
		ReadErrors []json.RawMessage `json:"read_errors"`
	}
	doc := out
	if i := strings.Index(out, "{"); i > 0 { // podman's warnings, if any, come first
		doc = out[i:]
	}
	if jerr := json.Unmarshal([]byte(doc), &rep); jerr != nil {
		t.Fatalf("audit in the container: %v, %v\n%s", err, jerr, out)
	}
	got := map[string]string{}
	for _, r := range rep.Rules {
		got[r.Backend] += fmt.Sprintf("%s fully-random=%v;", r.Owner, r.FullyRandom)
	}
	want := map[string]string{
		"iptables-legacy": "docker fully-random=false;",
		"iptables-nft":    "kube-proxy fully-random=true;",
		"nftables":        "unknown fully-random=false;", // the lab's own table
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(rep.ReadErrors) != 0 {
		t.Errorf("audit in the container: rules %v, want %v; read errors %s", got, want, rep.ReadErrors)
	}
}

// waitContainerAudit scrapes url from ns until the exporter has exported an
// audit, for 30 s, and fails t with the container's log otherwise.
func waitContainerAudit(t *testing.T, p *podmantest.Podman, name string, ns *netns.NS, url string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if fams := scrape(t, ns, url); fams["snatrace_audit_last_success_timestamp_seconds"] != nil || fams["snatrace_audit_duration_seconds"] != nil {
			return fams
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := p.Exec("logs", name)
	t.Fatalf("container %s exported no audit in 30 s; its log:\n%s", name, out)
	return nil
}

// containerBurst: after same-port bursts until the node counts 10 SNAT
// clashes, the exported insert_failed rose by exactly the kernel's delta.
func containerBurst(t *testing.T, s *lab.Session, url string) {
	before := stableCounters(t, s.Node(), url)
	r, err := s.Round(context.Background(), 200000, 10)
	if err != nil {
		t.Fatal(err)
	}
	after := stableCounters(t, s.Node(), url)
	kernel := ctstat.Delta(before.kernel, after.kernel).Total().InsertFailed
	if after.exported-before.exported != float64(kernel) || kernel != r.Conntrack.InsertFailed || kernel < 10 {
		t.Errorf("insert_failed delta: exported %v, kernel %d, lab %d (want >= 10)", after.exported-before.exported, kernel, r.Conntrack.InsertFailed)
	}
	t.Logf("%d connections: %d SNAT clashes, exported and counted by the kernel", r.Connections, kernel)
}

type counterReading struct {
	exported float64 // sum over CPUs of snatrace_conntrack_insert_failed_total
	kernel   ctstat.Snapshot
}

// stableCounters scrapes, reads the kernel, scrapes again until both scrapes
// agree, and checks that the scrape equals the kernel per CPU.
func stableCounters(t *testing.T, ns *netns.NS, url string) counterReading {
	t.Helper()
	perCPU := func() map[string]float64 {
		m := map[string]float64{}
		for _, x := range scrape(t, ns, url)["snatrace_conntrack_insert_failed_total"].GetMetric() {
			m[labelOf(x, "cpu")] = x.GetCounter().GetValue()
		}
		return m
	}
	for range 20 {
		a := perCPU()
		k, err := ctstat.ReadNetlink(ns)
		if err != nil {
			t.Fatal(err)
		}
		if b := perCPU(); fmt.Sprint(a) == fmt.Sprint(b) {
			r := counterReading{kernel: k}
			for _, c := range k.CPUs {
				if a[fmt.Sprint(c.CPU)] != float64(c.InsertFailed) {
					t.Errorf("cpu %d: exported %v, kernel %d", c.CPU, a[fmt.Sprint(c.CPU)], c.InsertFailed)
				}
				r.exported += a[fmt.Sprint(c.CPU)]
			}
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("counters kept moving over 20 scrapes")
	return counterReading{}
}

// unprivileged runs the exporter container without the manifest's added
// capabilities: it still serves the counters (from /proc), and the audit's
// failure is a metric and a log line that names the missing capability.
func unprivileged(t *testing.T, p *podmantest.Podman, ref string, ps podSpec, ns *netns.NS) {
	var run []string
	for _, a := range ps.runArgs(t, podIP) {
		if !strings.HasPrefix(a, "--cap-add=") {
			run = append(run, a)
		}
	}
	port := ps.c.Ports[0].ContainerPort + 1
	args := ps.containerArgs(podIP, "1s")
	for i, a := range args {
		if strings.HasPrefix(a, "--listen=") {
			args[i] = fmt.Sprintf("--listen=%s:%d", podIP, port)
		}
	}
	p.Run(t, append(append(append([]string{"run", "-d", "--name", "unprivileged"}, run...), ref), args...)...)
	url := fmt.Sprintf("http://%s:%d/metrics", podIP, port)
	fams := waitContainerAudit(t, p, "unprivileged", ns, url)
	errs := map[string]float64{}
	for _, m := range fams["snatrace_scrape_error"].GetMetric() {
		errs[labelOf(m, "source")] = m.GetGauge().GetValue()
	}
	if errs["audit"] != 1 || errs["netlink"] != 1 || errs["proc"] != 0 || fams["snatrace_conntrack_insert_failed_total"] == nil {
		t.Errorf("without capabilities: scrape errors %v, counters served: %v", errs, fams["snatrace_conntrack_insert_failed_total"] != nil)
	}
	log, _ := p.Exec("logs", "unprivileged")
	if !strings.Contains(log, `msg="source failing" source=audit`) || !strings.Contains(log, "CAP_NET_ADMIN") {
		t.Errorf("the exporter's log does not say the audit fails for want of CAP_NET_ADMIN:\n%s", log)
	}
}
