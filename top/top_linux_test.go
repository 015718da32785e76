//go:build linux

package top

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/buildtest"
	"github.com/snatrace/snatrace/internal/promtest"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/lab/labtest"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
)

func TestMain(m *testing.M) {
	code := m.Run()
	buildtest.Cleanup()
	os.Exit(code)
}

// exporterOn starts snatrace exporter watching ns on a free loopback port of
// the test's namespace and returns its address; it is stopped by PID.
func exporterOn(t *testing.T, bin string, ns *netns.NS) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log bytes.Buffer
	cmd := exec.Command(bin, "exporter", "--netns", ns.Path(), "--listen", addr, "--audit-interval", "1s")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("exporter on %s:\n%s", ns, log.String())
		}
	})
	return addr
}

// topJSON runs snatrace top --json and decodes its one document.
func topJSON(t *testing.T, bin, url string) Report {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, "top", "--prometheus", url, "--json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("snatrace top: %v\n%s", err, errb.String())
	}
	var rep Report
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&rep); err != nil || dec.More() {
		t.Fatalf("snatrace top --json: not one JSON document (%v):\n%s", err, out.String())
	}
	return rep
}

// racingByOwner is what snatrace audit says of ns: its rules that are not
// fully-random (this kernel is past 5.0: random alone does not race), by
// owner.
func racingByOwner(t *testing.T, bin string, ns *netns.NS) map[string]int {
	t.Helper()
	out, err := exec.Command(bin, "audit", "--json", "--interval", "0", "--netns", ns.Path()).Output()
	var rep struct {
		Rules []struct {
			Owner       string
			FullyRandom bool `json:"fully_random"`
		}
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("audit of %s: %v, %v", ns, err, jerr)
	}
	m := map[string]int{}
	for _, r := range rep.Rules {
		if !r.FullyRandom {
			m[r.Owner]++
		}
	}
	return m
}

// TestTopRealPrometheus: a real Prometheus scrapes the exporters of two lab
// nodes, one racing under plain masquerade and bursting, one fully-random
// and idle; snatrace top lists the racing node first, with audit's racing
// rules by owner, the kernel's clash count in the window and a positive
// rate, the kernel's nf_conntrack_max and a fresh audit; the other with no
// racing rule and no clash. A Prometheus without snatrace series is exit 2.
func TestTopRealPrometheus(t *testing.T) {
	a, _ := labtest.Node(t, lab.Config{Pods: 2}, "masquerade", natrule.Nftables)
	b, _ := labtest.Node(t, lab.Config{Pods: 2}, "masquerade fully-random", natrule.Nftables)
	bin := buildtest.Snatrace(t)
	prom := promtest.Start(t, nil, promtest.Config{Targets: []promtest.Target{
		{Addr: exporterOn(t, bin, a.Node()), Node: "lab-a"}, {Addr: exporterOn(t, bin, b.Node()), Node: "lab-b"},
	}})
	waitRows(t, bin, prom.URL, 2)

	before, err := ctstat.ReadNetlink(a.Node())
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Round(context.Background(), 200000, 10)
	if err != nil {
		t.Fatal(err)
	}
	after, err := ctstat.ReadNetlink(a.Node())
	if err != nil {
		t.Fatal(err)
	}
	clashes := ctstat.Delta(before, after).Total().InsertFailed
	var rep Report
	deadline := time.Now().Add(15 * time.Second)
	for rep = topJSON(t, bin, prom.URL); rep.Nodes[0].Clashes < float64(clashes) && time.Now().Before(deadline); rep = topJSON(t, bin, prom.URL) {
		time.Sleep(200 * time.Millisecond)
	}
	checkRows(t, bin, rep, a, b, clashes)
	t.Logf("lab-a: %d clashes in %d connections; top: %+v", clashes, r.Connections, rep.Nodes)

	empty := promtest.Start(t, nil, promtest.Config{})
	out, err := exec.Command(bin, "top", "--prometheus", empty.URL).CombinedOutput()
	want := "snatrace: the Prometheus at " + empty.URL + " has no snatrace series"
	if code := exitCode(err); code != 2 || !strings.HasPrefix(string(out), want) {
		t.Errorf("top against a Prometheus without snatrace: exit %d, %q; want 2, %q", code, out, want)
	}
}

// waitRows waits until top shows n audited nodes (30 s).
func waitRows(t *testing.T, bin, url string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.Command(bin, "top", "--prometheus", url, "--json").Output()
		var rep Report
		if err == nil && json.Unmarshal(out, &rep) == nil && len(rep.Nodes) == n {
			audited := 0
			for _, x := range rep.Nodes {
				if !x.LastAudit.IsZero() {
					audited++
				}
			}
			if audited == n {
				time.Sleep(2 * time.Second) // two more scrapes before the burst
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("top did not show %d audited nodes in 30 s", n)
}

// checkRows checks top's rows against audit and the kernel.
func checkRows(t *testing.T, bin string, rep Report, a, b *lab.Session, clashes uint64) {
	t.Helper()
	if len(rep.Nodes) != 2 || rep.Nodes[0].Node != "lab-a" || rep.Nodes[1].Node != "lab-b" {
		t.Fatalf("rows %+v, want lab-a then lab-b", rep.Nodes)
	}
	for i, s := range []*lab.Session{a, b} {
		n := rep.Nodes[i]
		g, err := ctstat.ReadNetlinkGlobal(s.Node())
		if err != nil {
			t.Fatal(err)
		}
		racing := racingByOwner(t, bin, s.Node())
		total := 0
		for _, c := range racing {
			total += c
		}
		if fmt.Sprint(n.RacingRules) != fmt.Sprint(racing) || n.RacingTotal != total || n.Max != float64(g.Max) ||
			!n.Scraped || len(n.Failing) != 0 || rep.Time.Sub(n.LastAudit) > 5*time.Second {
			t.Errorf("%s: %+v; audit's racing rules %v, kernel max %d", n.Node, n, racing, g.Max)
		}
	}
	if x := rep.Nodes[0]; x.Clashes != float64(clashes) || clashes < 10 || x.ClashesPerSecond <= 0 || x.RacingTotal == 0 {
		t.Errorf("lab-a: %v clashes (%v/s) in the window, the kernel counted %d", x.Clashes, x.ClashesPerSecond, clashes)
	}
	if x := rep.Nodes[1]; x.Clashes != 0 || x.ClashesPerSecond != 0 || x.RacingTotal != 0 {
		t.Errorf("lab-b (fully-random, idle): %+v", x)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
