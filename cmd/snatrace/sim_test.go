package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/sim"
)

func TestSimUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--era", "3.2"}, `snatrace: --era: parsing era "3.2": kernels before 3.13 (or after 9.x) are not modelled`},
		{[]string{"sim", "--era", "five"}, `snatrace: --era: parsing era "five": want legacy or a kernel version like 5.0 or 6.5`},
		{[]string{"sim", "--nat", "masqerade"}, `snatrace: --nat: invalid NAT mode "masqerade": unknown action "masqerade": want none, masquerade or snat`},
		{[]string{"sim", "--workload", "burst"}, `snatrace: --workload: unknown workload "burst": want same-port, ephemeral, steady, short`},
		{[]string{"sim", "--workload", "steady"}, `snatrace: --rate: the steady workload needs a rate, e.g. --rate 5000/s`},
		{[]string{"sim", "--workload", "short"}, `snatrace: --rate: the short workload needs a rate, e.g. --rate 5000/s`},
		{[]string{"sim", "--workload", "short", "--rate", "10/s", "--ts-offsets", "random"}, `snatrace: --ts-offsets: "random": want per-port or per-address`},
		{[]string{"sim", "--workload", "short", "--rate", "10/s", "--server-timewait", "-1s"}, `snatrace: --server-timewait: -1s is out of range (0, 1h]`},
		{[]string{"sim", "--pods", "0"}, `snatrace: --pods: 0 is out of range 1..1048576`},
		{[]string{"sim", "--cpus", "100000"}, `snatrace: --cpus: 100000 is out of range 1..4096`},
		{[]string{"sim", "--connections", "900000000"}, `snatrace: --connections: 900000000 is out of range 1..16666666`},
		{[]string{"sim", "--connections", "16666667"}, `snatrace: --connections: 16666667 is out of range 1..16666666`},
		{[]string{"sim", "--workload", "steady", "--rate", "1e7/s", "--duration", "1h"}, `snatrace: --duration: 1h0m0s at 1e+07/s is 3.6e+10 connections, more than 16666666, the most with --syn-retries 6`},
		{[]string{"sim", "--workload", "steady", "--rate", "1e-6/s"}, `snatrace: --rate: 1e-06/s starts 20000 connections over 2e+10 s, more than a year of simulated time: raise the rate or lower the connections`},
		{[]string{"sim", "--rto", "24h"}, `snatrace: --rto: 24h0m0s is out of range (0, 2m0s]`},
		{[]string{"sim", "--sweep", "pods=0.4,2"}, `snatrace: --sweep: pods=0.4 rounds to 0: want at least 1`},
		{[]string{"sim", "--sweep", "pods=2,4", "--plot", "/nonexistent/x.svg"}, `snatrace: --plot: /nonexistent: no such directory`},
		{[]string{"sim", "--poisson"}, `snatrace: --poisson: only with --workload steady or short`},
		{[]string{"sim", "--workload", "steady", "--rate", "10", "--server-timewait", "10s"}, `snatrace: --server-timewait: only with --workload short`},
		{[]string{"sim", "--workload", "steady", "--rate", "100", "--duration", "10s", "--connections", "5"}, `snatrace: --duration: give --connections or --duration, not both (connections = rate x duration)`},
		{[]string{"sim", "--calibrate", "lab.json", "--era", "5.0"}, `snatrace: --era: --calibrate and --predict take the kernel, the modes and the scenario from the lab report; leave out --era`},
		{[]string{"sim", "--predict", "lab.json", "--sweep", "pods=1,2"}, `snatrace: --sweep: --calibrate and --predict take the kernel, the modes and the scenario from the lab report; leave out --sweep`},
		{[]string{"sim", "--port-range", "5000-4000"}, `snatrace: --port-range: "5000-4000": want LOW-HIGH with 1024 <= LOW <= HIGH <= 65535`},
		{[]string{"sim", "--window", "uniform:50-10us"}, `snatrace: --window: parsing distribution "uniform:50-10us": min 50µs > max 10µs`},
		{[]string{"sim", "--nat", "masquerade to :2000-1000"}, ""}, // natrule's own message, checked by prefix below
		{[]string{"sim", "--sweep", "colour=1,2"}, `snatrace: --sweep: unknown parameter "colour": want one of pods, cpus, servers, rate, range, nat-range, window`},
		{[]string{"sim", "--sweep", "pods=64:16:x2"}, `snatrace: --sweep: range 64:16 is empty (start > end)`},
		{[]string{"sim", "--plot", "x.svg"}, `snatrace: --plot: needs --sweep`},
		{[]string{"sim", "--sweep", "pods=2,4", "--plot", "x.pdf"}, `snatrace: --plot: "x.pdf" must end in .svg or .png`},
		{[]string{"sim", "--calibrate", "/nonexistent/lab.json"}, `snatrace: --calibrate: open /nonexistent/lab.json: no such file or directory`},
		{[]string{"sim", "--chooser", "magic"}, `snatrace: --chooser: unknown "magic": want hashed, uniform or sequential`},
		{[]string{"sim", "--era", "6.5,5.0", "--syn-linear-timeouts", "0"}, `snatrace: --syn-linear-timeouts: era 5.0 has no net.ipv4.tcp_syn_linear_timeouts (added in 6.5): its SYN timeouts double from the first`},
		{[]string{"sim", "--syn-linear-timeouts", "128"}, `snatrace: --syn-linear-timeouts: 128 is out of range 0..127`},
		{[]string{"sim", "--proto", "udp", "--syn-linear-timeouts", "1"}, `snatrace: --syn-linear-timeouts: a TCP setting: UDP queries are not retransmitted by the kernel`},
		{[]string{"sim", "--predict", "lab.json", "--syn-linear-timeouts", "0"}, `snatrace: --syn-linear-timeouts: --calibrate and --predict take the kernel, the modes and the scenario from the lab report; leave out --syn-linear-timeouts`},
	}
	for _, tt := range tests {
		stdout, stderr, code := runCLI(t, tt.args...)
		got := strings.TrimSpace(stderr)
		if tt.want == "" {
			if code != exitUsage || !strings.HasPrefix(got, "snatrace: --nat: ") {
				t.Errorf("snatrace %v: exit %d, stderr %q", tt.args, code, stderr)
			}
			continue
		}
		if code != exitUsage || got != tt.want || stdout != "" {
			t.Errorf("snatrace %v: exit %d, stderr %q, stdout %q; want exit 2, stderr %q", tt.args, code, stderr, stdout, tt.want)
		}
	}
}

func TestSimJSON(t *testing.T) {
	stdout, stderr, code := runCLI(t, "sim", "--era", "5.0", "--nat", "masquerade", "--nat", "masquerade fully-random",
		"--workload", "same-port", "--pods", "8", "--cpus", "2", "--connections", "4000", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Results []struct {
			Era           string         `json:"era"`
			NAT           string         `json:"nat"`
			Connections   int            `json:"connections"`
			Clashes       uint64         `json:"clashes"`
			ClashRate     float64        `json:"clash_rate"`
			ClashRateCI95 [2]float64     `json:"clash_rate_ci95"`
			Delayed       map[string]int `json:"delayed"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
	}
	if len(doc.Results) != 2 {
		t.Fatalf("%d results", len(doc.Results))
	}
	plain, fr := doc.Results[0], doc.Results[1]
	if plain.Era != "5.0" || plain.NAT != "masquerade" || plain.Connections != 4000 || plain.Clashes == 0 ||
		plain.ClashRateCI95[0] > plain.ClashRate || plain.ClashRateCI95[1] < plain.ClashRate || plain.Delayed["1"] == 0 {
		t.Errorf("plain masquerade: %+v", plain)
	}
	if fr.NAT != "masquerade fully-random" || fr.Clashes >= plain.Clashes {
		t.Errorf("fully-random %+v vs plain %d clashes", fr, plain.Clashes)
	}
}

// A sweep gives the same numbers on one worker and on many, and writes a plot.
func TestSimSweepDeterministicAcrossWorkers(t *testing.T) {
	dir := t.TempDir()
	args := []string{"sim", "--nat", "masquerade", "--nat", "masquerade fully-random", "--workload", "ephemeral",
		"--sweep", "pods=4,16,64", "--connections", "3000", "--cpus", "4", "--port-range", "32768-33767", "--json"}
	one, stderr, code := runCLI(t, append(args, "--workers", "1")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	plot := filepath.Join(dir, "pods.svg")
	many, stderr, code := runCLI(t, append(args, "--workers", "3", "--plot", plot)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if one != many {
		t.Errorf("sweep differs between 1 and 3 workers")
	}
	b, err := os.ReadFile(plot)
	if err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("plot: %v", err)
	}
	var doc struct {
		Param  string `json:"param"`
		Series []struct {
			NAT    string `json:"nat"`
			Points []struct {
				Value float64 `json:"value"`
			} `json:"points"`
		} `json:"series"`
	}
	if err := json.Unmarshal([]byte(one), &doc); err != nil || doc.Param != "pods" || len(doc.Series) != 2 || len(doc.Series[0].Points) != 3 {
		t.Errorf("sweep JSON: %v %+v", err, doc)
	}
}

// --predict exits 0 when every prediction agrees with its measurement and 1
// (findings) when one does not, so a drift check can gate on the exit code.
func TestSimPredictExitCode(t *testing.T) {
	lab := filepath.Join("..", "..", "sim", "testdata", "lab-same-port-4pods.json")
	stdout, stderr, code := runCLI(t, "sim", "--calibrate", lab, "--json")
	if code != 0 {
		t.Fatalf("calibrate: exit %d: %s", code, stderr)
	}
	var cal map[string]any
	if err := json.Unmarshal([]byte(stdout), &cal); err != nil {
		t.Fatal(err)
	}
	write := func(name string, doc map[string]any) string {
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.json", cal)
	if _, stderr, code := runCLI(t, "sim", "--predict", lab, "--calibration", good); code != 0 {
		t.Errorf("predicting the fitted run with its own window: exit %d, want 0: %s", code, stderr)
	}
	// An edited window that the scales contradict is refused, not ignored.
	window := cal["window"]
	cal["window"] = "exp:28us"
	_, stderr, code = runCLI(t, "sim", "--predict", lab, "--calibration", write("edited.json", cal))
	if code != exitUsage || !strings.Contains(stderr, `calibration window "exp:28us" does not match shape`) {
		t.Errorf("edited window: exit %d, stderr %q", code, stderr)
	}
	cal["window"] = window
	// A window 100 times too long predicts far more clashes than measured.
	for _, k := range []string{"window", "window_lo", "window_hi"} {
		delete(cal, k)
	}
	for _, k := range []string{"scale", "scale_lo", "scale_hi"} {
		cal[k] = cal[k].(float64) * 100
	}
	bad := write("bad.json", cal)
	stdout, stderr, code = runCLI(t, "sim", "--predict", lab, "--calibration", bad, "--json")
	if code != exitFindings {
		t.Fatalf("disagreeing prediction: exit %d, want %d: %s", code, exitFindings, stderr)
	}
	var doc struct {
		Predictions []struct {
			NAT   string `json:"nat"`
			Agree bool   `json:"agree"`
		} `json:"predictions"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Predictions) == 0 {
		t.Fatalf("predictions JSON: %v\n%s", err, stdout)
	}
	if doc.Predictions[0].NAT != "masquerade" || doc.Predictions[0].Agree {
		t.Errorf("first prediction %+v: want masquerade, disagreeing", doc.Predictions[0])
	}
}

// A rate sweep of the steady workload needs no --rate: each value is the
// rate, and with --duration each point sends rate x duration connections.
// Below the NAT range's capacity (100 ports held 10 s: 10/s) nothing is
// lost; above it, SYNs are dropped for lack of a tuple.
func TestSimSweepRate(t *testing.T) {
	stdout, stderr, code := runCLI(t, "sim", "--workload", "steady", "--era", "5.0", "--nat", "masquerade to :20000-20099",
		"--pods", "4", "--duration", "20s", "--ct-timewait", "10s", "--client-timewait", "1ns", "--syn-retries", "3",
		"--sweep", "rate=5,20", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Series []struct {
			Points []struct {
				Result sim.Result `json:"result"`
			} `json:"points"`
		} `json:"series"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Series) != 1 || len(doc.Series[0].Points) != 2 {
		t.Fatalf("sweep JSON: %v %s", err, stdout)
	}
	below, above := doc.Series[0].Points[0].Result, doc.Series[0].Points[1].Result
	if below.Connections != 100 || above.Connections != 400 {
		t.Errorf("connections %d, %d; want rate x duration: 100, 400", below.Connections, above.Connections)
	}
	if below.Clashes != 0 {
		t.Errorf("5/s into 100 ports held 10 s: %d drops, want 0", below.Clashes)
	}
	if above.NoTuple == 0 || above.NoTuple != above.Clashes {
		t.Errorf("20/s into 100 ports held 10 s: %d drops, %d for lack of a tuple; want drops, all for lack of a tuple", above.Clashes, above.NoTuple)
	}
}
