//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
)

// TestLabUDPJSON runs the UDP lab from the command line: one JSON document
// with the fields per result, and the HTML report.
func TestLabUDPJSON(t *testing.T) {
	testenv.NeedRoot(t, "CAP_NET_ADMIN, CAP_SYS_ADMIN")
	html := filepath.Join(t.TempDir(), "dns.html")
	stdout, stderr, code := runCLI(t, "lab", "--proto", "udp", "--nat", "masquerade", "--until", "5", "--udp-timeout", "300ms", "--json", "--report", html)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Proto   string `json:"proto"`
		Results []map[string]json.RawMessage
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Proto != "udp" || len(rep.Results) != 1 {
		t.Fatalf("JSON %v: proto %q, %d results:\n%s", err, rep.Proto, len(rep.Results), stdout)
	}
	for _, k := range []string{"queries", "lost", "retried", "datagrams", "conntrack", "conntrack_per_cpu", "udp_causes", "accounted"} {
		if _, ok := rep.Results[0][k]; !ok {
			t.Errorf("result has no %q", k)
		}
	}
	var ct map[string]uint64
	json.Unmarshal(rep.Results[0]["conntrack"], &ct)
	for _, k := range []string{"insert_failed", "drop", "clash_resolve"} {
		if _, ok := ct[k]; !ok {
			t.Errorf("conntrack has no %q", k)
		}
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("query latency")) || !bytes.Contains(page, []byte("clash_resolve")) {
		t.Errorf("HTML report: %v, %d bytes", err, len(page))
	}
}

// TestLabUDPInterrupt interrupts a UDP lab whose clients wait 5 s for lost
// answers: it must not sit out the wait, and must report, exit 130 and leave
// no namespace behind.
func TestLabUDPInterrupt(t *testing.T) {
	testenv.NeedRoot(t, "CAP_NET_ADMIN, CAP_SYS_ADMIN")
	var out, errb bytes.Buffer
	cmd := snatrace("lab", "--proto", "udp", "--nat", "masquerade", "--connections", "2000000", "--json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	took := time.Since(sent)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, stderr %q; want exit 130", err, errb.String())
	}
	if took > 4*time.Second {
		t.Errorf("took %v to stop: the 5 s waits were sat out", took)
	}
	var rep struct {
		Prefix  string `json:"prefix"`
		Stopped string `json:"stopped"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Stopped != "interrupted" || !strings.HasPrefix(rep.Prefix, "snt-") {
		t.Fatalf("partial report %v: %+v", err, rep)
	}
	if left, _ := netns.List(rep.Prefix); len(left) != 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	t.Logf("stopped %v after SIGINT", took.Round(time.Millisecond))
}
