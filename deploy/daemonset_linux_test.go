//go:build linux

package deploy

import (
	"bufio"
	"context"
	"encoding/json"
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

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
)

// container is how the DaemonSet runs snatrace: its user, capabilities and
// arguments, as the manifest says.
type container struct {
	uid  int64
	caps []string // lower case, without CAP_: net_admin
	args []string
}

// containerOf reads the exporter container of a DaemonSet manifest (or
// strategic-merge patch) file.
func containerOf(t *testing.T, path string) container {
	t.Helper()
	var ds appsv1.DaemonSet
	decodeStrict(t, path, &ds)
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].SecurityContext == nil || cs[0].SecurityContext.Capabilities == nil {
		t.Fatalf("%s: want one container with a securityContext and capabilities", path)
	}
	c := container{args: cs[0].Args}
	sc := cs[0].SecurityContext
	if sc.RunAsUser != nil {
		c.uid = *sc.RunAsUser
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("%s: capabilities drop %v, want ALL", path, sc.Capabilities.Drop)
	}
	for _, a := range sc.Capabilities.Add {
		c.caps = append(c.caps, strings.ToLower(string(a)))
	}
	return c
}

// command runs bin with args as the container would: the manifest's user,
// exactly its capabilities (bounding, inheritable and ambient sets), no new
// privileges.
func (c container) command(bin string, args ...string) *exec.Cmd {
	set := "-all"
	for _, cp := range c.caps {
		set += ",+" + cp
	}
	pargs := []string{"--reuid=" + strconv.FormatInt(c.uid, 10), "--regid=" + strconv.FormatInt(c.uid, 10), "--clear-groups",
		"--bounding-set=" + set, "--inh-caps=" + set, "--no-new-privs"}
	if c.uid != 0 {
		pargs = append(pargs, "--ambient-caps="+set)
	}
	return exec.Command("setpriv", append(append(pargs, "--", bin), args...)...)
}

// exporterArgs are the container's arguments with the listen address of
// the test.
func (c container) exporterArgs(listen string) []string {
	var out []string
	for _, a := range c.args {
		if strings.HasPrefix(a, "--listen=") {
			a = "--listen=" + listen
		}
		if strings.HasPrefix(a, "--audit-interval=") {
			a = "--audit-interval=1s"
		}
		out = append(out, a)
	}
	return out
}

func buildSnatrace(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "snatrace")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/snatrace").CombinedOutput()
	if err != nil {
		t.Fatalf("building snatrace: %v\n%s", err, out)
	}
	return bin
}

// threeBackends loads one source-NAT rule of each backend into ns, none of
// which matches the lab's pods (their sources are TEST-NET-1 and -3).
func threeBackends(t *testing.T, ns *netns.NS) {
	t.Helper()
	netnstest.Run(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE\nCOMMIT\n", "iptables-legacy-restore", "--noflush", "-w")
	netnstest.Run(t, ns, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE\nCOMMIT\n", "iptables-nft-restore", "--noflush", "-w")
}

// start runs cmd from a thread inside ns, so that it lives there (as a pod
// with hostNetwork lives in the node's namespace), and stops it at cleanup.
func start(t *testing.T, ns *netns.NS, cmd *exec.Cmd) *strings.Builder {
	t.Helper()
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := ns.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return &logs
}

// scrape fetches the exporter's metrics from inside ns.
func scrape(t *testing.T, ns *netns.NS, url string) map[string]*dto.MetricFamily {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		},
	}}
	resp, err := client.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitAudit scrapes until an audit has been exported (or 20 s passed).
func waitAudit(t *testing.T, ns *netns.NS, url string, logs *strings.Builder) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if fams := scrape(t, ns, url); fams["snatrace_audit_last_success_timestamp_seconds"] != nil {
			return fams
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no audit exported in 20 s; exporter log:\n%s", logs)
	return nil
}

// assertAllBackends checks that the rules of all three backends are
// exported and that no source failed.
func assertAllBackends(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	backends := map[string]float64{}
	for _, m := range fams["snatrace_snat_rules"].GetMetric() {
		backends[labelOf(m, "backend")] += m.GetGauge().GetValue()
	}
	for _, b := range []string{"nftables", "iptables-nft", "iptables-legacy"} {
		if backends[b] < 1 {
			t.Errorf("no %s rule exported (rules by backend: %v)", b, backends)
		}
	}
	for _, m := range fams["snatrace_scrape_error"].GetMetric() {
		if src := labelOf(m, "source"); m.GetGauge().GetValue() != 0 && src != "netlink" && src != "proc" {
			t.Errorf("snatrace_scrape_error{source=%q} = 1", src)
		}
	}
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestDaemonSetAsItRuns runs the exporter and audit with exactly the user
// and capabilities of kubernetes/daemonset.yaml, in a lab node holding
// iptables-legacy, iptables-nft and nftables rules: all three must be
// audited, with no read error. (With NET_ADMIN alone, iptables-legacy-save
// fails and the legacy rules went missing without a trace.)
func TestDaemonSetAsItRuns(t *testing.T) {
	testenv.NeedRoot(t, "runs the exporter in a lab node under the manifest's capabilities")
	if _, err := exec.LookPath("setpriv"); err != nil {
		testenv.Skip(t, "needs setpriv (util-linux)")
	}
	c := containerOf(t, "kubernetes/daemonset.yaml")
	bin := buildSnatrace(t)
	s, _ := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	threeBackends(t, s.Node())

	out, err := runIn(s.Node(), c.command(bin, "audit", "--json", "--interval", "0"))
	var rep struct {
		Rules      []struct{ Backend string }
		ReadErrors []struct{ Backend, Source, Error string } `json:"read_errors"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("audit under %v: %v, %v\n%s", c.caps, err, jerr, out)
	}
	got := map[string]int{}
	for _, r := range rep.Rules {
		got[r.Backend]++
	}
	if got["nftables"] < 1 || got["iptables-nft"] < 1 || got["iptables-legacy"] < 1 || len(rep.ReadErrors) != 0 {
		t.Errorf("audit under %v: rules by backend %v, read errors %+v", c.caps, got, rep.ReadErrors)
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", freePort(t))
	logs := start(t, s.Node(), c.command(bin, c.exporterArgs(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics"))...))
	assertAllBackends(t, waitAudit(t, s.Node(), url, logs))
}

// TestDaemonSetTraceAsItRuns is the trace variant (kubernetes/trace/): with
// its capabilities the exporter attaches the tracer and counts the SNAT-clash
// drops of a same-port burst on the node, besides all three backends' rules.
func TestDaemonSetTraceAsItRuns(t *testing.T) {
	testenv.NeedRoot(t, "runs the exporter in a lab node under the manifest's capabilities")
	if _, err := exec.LookPath("setpriv"); err != nil {
		testenv.Skip(t, "needs setpriv (util-linux)")
	}
	base := containerOf(t, "kubernetes/daemonset.yaml")
	c := containerOf(t, "kubernetes/trace/daemonset-trace.yaml")
	c.uid = base.uid // the patch leaves the user to the base
	if !slices.Contains(c.args, "--trace") {
		t.Fatalf("the trace variant's args %v lack --trace", c.args)
	}
	bin := buildSnatrace(t)
	s, _ := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	threeBackends(t, s.Node())
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", freePort(t))
	logs := start(t, s.Node(), c.command(bin, c.exporterArgs(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics"))...))
	assertAllBackends(t, waitAudit(t, s.Node(), url, logs))

	r, err := s.Round(context.Background(), 400000, 10)
	if err != nil {
		t.Fatal(err)
	}
	if r.Conntrack.InsertFailed == 0 {
		testenv.Skip(t, "the lab made no clash in %d connections", r.Connections)
	}
	deadline := time.Now().Add(10 * time.Second)
	var drops float64
	for time.Now().Before(deadline) {
		drops = 0
		for _, m := range scrape(t, s.Node(), url)["snatrace_snat_clash_drops_total"].GetMetric() {
			drops += m.GetCounter().GetValue()
		}
		if drops >= float64(r.Conntrack.InsertFailed) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if drops != float64(r.Conntrack.InsertFailed) {
		t.Errorf("snatrace_snat_clash_drops_total = %v, the kernel counted %d insert failures; exporter log:\n%s", drops, r.Conntrack.InsertFailed, logs)
	}
}

// runIn runs cmd to completion from a thread inside ns and returns its
// standard output.
func runIn(ns *netns.NS, cmd *exec.Cmd) ([]byte, error) {
	var out []byte
	err := ns.Do(func() (err error) {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		out, _ = io.ReadAll(stdout)
		return cmd.Wait()
	})
	return out, err
}
