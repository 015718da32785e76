package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run the real binary: with SNATRACE_TEST_MAIN set, the
// test executable behaves as snatrace itself.
func TestMain(m *testing.M) {
	if os.Getenv("SNATRACE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// snatrace returns a command running this binary as snatrace with args.
func snatrace(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SNATRACE_TEST_MAIN=1")
	return cmd
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := snatrace(args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"lab", "--nat", "masqerade"}, `snatrace: --nat: invalid NAT mode "masqerade": unknown action "masqerade": want none, masquerade or snat`},
		{[]string{"lab", "--backend", "pf"}, `snatrace: --backend: unknown backend "pf": want nft, iptables-nft or iptables-legacy`},
		{[]string{"lab", "--pods", "5000"}, "snatrace: pods: 5000 is out of range 1..1000"},
		{[]string{"lab", "--workload", "burst"}, `snatrace: unknown workload "burst": want same-port, ephemeral, steady`},
		{[]string{"lab", "--rate", "fast"}, `snatrace: --rate: "fast": want a positive rate such as 2000/s`},
		{[]string{"lab", "--port-range", "100-50"}, `snatrace: --port-range: "100-50": want LOW-HIGH with 1024 <= LOW <= HIGH <= 65535`},
		{[]string{"lab", "--report", "x.pdf"}, `snatrace: --report: "x.pdf" must end in .html`},
		{[]string{"lab", "--connections", "lots"}, `snatrace: invalid argument "lots" for "--connections" flag: strconv.ParseInt: parsing "lots": invalid syntax`},
		{[]string{"lab", "--no-such-flag"}, "snatrace: unknown flag: --no-such-flag"},
		{[]string{"frobnicate"}, `snatrace: unknown command "frobnicate" for "snatrace"`},
	}
	for _, tt := range tests {
		stdout, stderr, code := runCLI(t, tt.args...)
		if code != exitUsage || strings.TrimSpace(stderr) != tt.want || stdout != "" {
			t.Errorf("snatrace %v: exit %d, stderr %q, stdout %q; want exit 2, stderr %q", tt.args, code, stderr, stdout, tt.want)
		}
	}
}

// TestLabWithoutPrivileges runs the lab as an unprivileged user: exit 2 with
// a message that names what is missing and points to sim.
func TestLabWithoutPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary must be reachable by nobody: copy it somewhere open.
	dir, err := os.MkdirTemp("", "snatrace-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := dir + "/snatrace"
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd := exec.Command(bin, "lab")
	cmd.Env = []string{"SNATRACE_TEST_MAIN=1"}
	cmd.Stderr = &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitUsage {
		t.Fatalf("unprivileged lab: %v, stderr %q; want exit 2", err, errb.String())
	}
	for _, want := range []string{"needs root", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "snatrace sim"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("message %q does not mention %q", errb.String(), want)
		}
	}
}

// TestLabSignals interrupts a long lab with SIGINT and SIGTERM: it must print
// its partial results, exit 2 and leave no namespace behind.
func TestLabSignals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to run the lab")
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := snatrace("lab", "--connections", "2000000", "--json")
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != exitUsage {
				t.Fatalf("after %v: %v, stderr %q; want exit 2", sig, err, errb.String())
			}
			if !strings.Contains(errb.String(), "lab run interrupted") {
				t.Errorf("stderr %q does not say the run was interrupted", errb.String())
			}
			var rep struct {
				Prefix  string `json:"prefix"`
				Stopped string `json:"stopped"`
			}
			if err := jsonUnmarshal(out.Bytes(), &rep); err != nil || rep.Stopped != "interrupted" {
				t.Fatalf("partial report: %v %+v\n%s", err, rep, out.String())
			}
			if left, _ := listNamespaces(rep.Prefix); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}
