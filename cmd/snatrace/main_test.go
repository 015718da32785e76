package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/vmlab/guest"
)

// TestMain lets tests run the real binary: with SNATRACE_TEST_MAIN set, the
// test executable behaves as snatrace itself; so it does as a VM guest's
// init and modprobe (the kernel starts modprobe with an environment of its
// own).
func TestMain(m *testing.M) {
	if os.Getenv("SNATRACE_TEST_MAIN") == "1" || guest.IsInit() || guest.IsModprobe() {
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
		{[]string{"lab", "--workload", "burst"}, `snatrace: unknown workload "burst": want same-port, ephemeral, steady, short`},
		{[]string{"lab", "--workload", "short", "--poisson"}, "snatrace: poisson: Poisson arrivals need a --rate"},
		{[]string{"lab", "--proto", "udp", "--workload", "short"}, "snatrace: workload: short is not a UDP workload: want same-port, ephemeral, pairs"},
		{[]string{"lab", "--rate", "fast"}, `snatrace: --rate: "fast": want a positive rate such as 2000/s`},
		{[]string{"lab", "--port-range", "100-50"}, `snatrace: --port-range: "100-50": want LOW-HIGH with 1024 <= LOW <= HIGH <= 65535`},
		{[]string{"lab", "--report", "x.pdf"}, `snatrace: --report: "x.pdf" must end in .html`},
		{[]string{"lab", "--connections", "lots"}, `snatrace: invalid argument "lots" for "--connections" flag: strconv.ParseInt: parsing "lots": invalid syntax`},
		{[]string{"lab", "--no-such-flag"}, "snatrace: unknown flag: --no-such-flag"},
		{[]string{"lab", "--timeout", "0"}, "snatrace: --timeout: 0s must be positive"},
		{[]string{"lab", "--timeout", "-1s"}, "snatrace: --timeout: -1s must be positive"},
		{[]string{"lab", "--connections", "0"}, "snatrace: --connections: 0 must be positive"},
		{[]string{"lab", "--rate", "100/s"}, "snatrace: rate: only the steady workload takes a rate (workload same-port sends bursts)"},
		{[]string{"lab", "--workload", "ephemeral", "--poisson"}, "snatrace: poisson: only the steady workload has Poisson arrivals (workload ephemeral sends bursts)"},
		{[]string{"lab", "--nat", "masquerade persistent", "--backend", "iptables-legacy"}, `snatrace: nat "masquerade persistent": cannot be installed through iptables-legacy: "masquerade persistent": iptables MASQUERADE has no --persistent: not supported by this backend`},
		{[]string{"lab", "--proto", "sctp"}, `snatrace: --proto: "sctp" is not tcp or udp`},
		{[]string{"lab", "--udp-timeout", "1s"}, "snatrace: --udp-timeout: only with --proto udp"},
		{[]string{"lab", "--service"}, "snatrace: --service: only with --proto udp"},
		{[]string{"lab", "--workload", "pairs"}, "snatrace: workload: pairs is a UDP workload (use --proto udp)"},
		{[]string{"lab", "--proto", "udp", "--workload", "steady"}, "snatrace: workload: steady is not a UDP workload: want same-port, ephemeral, pairs"},
		{[]string{"lab", "--proto", "udp", "--udp-timeout", "0"}, "snatrace: --udp-timeout: 0s must be positive"},
		{[]string{"lab", "--proto", "udp", "--udp-attempts", "9"}, "snatrace: --udp-attempts: 9 is out of range 1..5"},
		{[]string{"lab", "--proto", "udp", "--rate", "100/s"}, "snatrace: --rate/--poisson: the udp workloads send bursts (same-port, ephemeral, pairs)"},
		{[]string{"sim", "--proto", "udp", "--rate", "100/s"}, "snatrace: --rate: the udp workloads send bursts back to back"},
		{[]string{"sim", "--udp-attempts", "3"}, "snatrace: --udp-attempts: only with --proto udp"},
		{[]string{"sim", "--proto", "udp", "--workload", "steady"}, "snatrace: --workload: steady is not a UDP workload: want same-port, ephemeral, pairs"},
		{[]string{"frobnicate"}, `snatrace: unknown command "frobnicate" for "snatrace"`},
	}
	for _, tt := range tests {
		stdout, stderr, code := runCLI(t, tt.args...)
		if code != exitUsage || strings.TrimSpace(stderr) != tt.want || stdout != "" {
			t.Errorf("snatrace %v: exit %d, stderr %q, stdout %q; want exit 2, stderr %q", tt.args, code, stderr, stdout, tt.want)
		}
	}
}
