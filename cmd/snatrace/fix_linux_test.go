//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/tsoffset"
)

func fixNS(t *testing.T, name string) *netns.NS { return netnstest.New(t, "fx-"+name) }

func inNS(t *testing.T, ns *netns.NS, stdin, name string, args ...string) string {
	t.Helper()
	return netnstest.Run(t, ns, stdin, name, args...)
}

const fixLegacyNat = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
COMMIT
`

const fixNftNat = `table ip cni {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.88.0.0/16 counter masquerade
	}
}
`

func saveAll(t *testing.T, ns *netns.NS) string {
	// Without the "# Generated ... on <time>" lines, which change by the second.
	return stripVolatile(inNS(t, ns, "", "iptables-legacy-save", "-t", "nat") + inNS(t, ns, "", "nft", "list", "ruleset"))
}

// TestFixPlanApplyRollbackCLI drives the command: plan (exit 1, nothing
// changed), --json, --apply (exit 0), plan again (exit 0), --rollback.
func TestFixPlanApplyRollbackCLI(t *testing.T) {
	ns := fixNS(t, "cli")
	inNS(t, ns, fixLegacyNat, "iptables-legacy-restore", "-w")
	inNS(t, ns, fixNftNat, "nft", "-f", "-")
	orig := saveAll(t, ns)

	out, errs, code := runCLI(t, "fix", "--netns", ns.Path())
	if code != exitFindings || !strings.Contains(out, "2 source-NAT rules to make fully-random") || errs != "" {
		t.Fatalf("plan: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if saveAll(t, ns) != orig {
		t.Fatal("plan mode changed rules")
	}
	out, _, code = runCLI(t, "fix", "--netns", ns.Path(), "--json")
	var doc struct {
		Mode string
		Plan struct {
			Changes []struct{ Before, After, Method string }
			PAWS    *struct {
				TSOffsets tsoffset.Detection `json:"ts_offsets"`
			}
		}
	}
	if code != exitFindings || jsonUnmarshal([]byte(out), &doc) != nil || doc.Mode != "plan" || len(doc.Plan.Changes) != 2 {
		t.Fatalf("plan --json: exit %d, %+v\n%s", code, doc, out)
	}
	checkPAWSNote(t, doc.Plan.PAWS != nil, func() tsoffset.Detection { return doc.Plan.PAWS.TSOffsets })
	backup := filepath.Join(t.TempDir(), "b.json")
	out, errs, code = runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--backup", backup)
	if code != exitOK || !strings.Contains(out, "Verified") {
		t.Fatalf("apply: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	fixed := saveAll(t, ns)
	for _, want := range []string{"-j MASQUERADE --random-fully", "masquerade fully-random"} {
		if !strings.Contains(fixed, want) {
			t.Errorf("after apply the rules lack %q:\n%s", want, fixed)
		}
	}
	if _, _, code = runCLI(t, "fix", "--netns", ns.Path()); code != exitOK {
		t.Errorf("plan after apply: exit %d, want 0", code)
	}
	noProbeLeft(t) // a plan without changes never asks for the probe's result
	out, errs, code = runCLI(t, "fix", "--netns", ns.Path(), "--rollback", backup, "--json")
	if code != exitOK || !strings.Contains(out, `"mode": "rollback"`) {
		t.Fatalf("rollback: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := saveAll(t, ns); stripVolatile(got) != stripVolatile(orig) {
		t.Fatalf("rollback did not restore the rules:\n%s\nwant\n%s", got, orig)
	}
	out, _, code = runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--no-backup", "--json")
	var applied struct {
		Mode   string
		Result struct {
			Applied  []struct{ Method string }
			Verified bool
			Backup   string
		}
	}
	if code != exitOK || jsonUnmarshal([]byte(out), &applied) != nil || applied.Mode != "apply" || !applied.Result.Verified ||
		len(applied.Result.Applied) != 2 || applied.Result.Backup != "" {
		t.Errorf("apply --json: exit %d, %+v\n%s", code, applied, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version": 1, "entries": [{"backend": "pf"}]}`), 0o600)
	if _, errs, code = runCLI(t, "fix", "--netns", ns.Path(), "--rollback", bad); code != exitUsage || !strings.Contains(errs, `entry 1: the file asks for a change snatrace would not make: unknown backend "pf"`) {
		t.Errorf("bad backup: exit %d, stderr %q", code, errs)
	}
}

// checkPAWSNote checks a plan's PAWS note against the kernel: the plan
// carries one exactly when a probe of its own finds per-port (or unknown)
// offsets, and says it probed; the probe the command ran beside its read
// left no namespace behind.
func checkPAWSNote(t *testing.T, has bool, note func() tsoffset.Detection) {
	t.Helper()
	d, err := tsoffset.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := d.Kind == tsoffset.PerPort || d.Kind == tsoffset.Unknown; has != want {
		t.Errorf("PAWS note in the plan: %v, want %v on a %s kernel", has, want, d.Kind)
	}
	if has && (note().Kind != d.Kind || !strings.HasPrefix(note().Reason, "probed: ")) {
		t.Errorf("PAWS note says %s (%s), want %s, probed", note().Kind, note().Reason, d.Kind)
	}
	noProbeLeft(t)
}

// noProbeLeft fails when a timestamp probe's namespace stays: a probe
// lives for about 50 ms, so a name seen now and still there 2 s later was
// left behind (other test processes may be probing meanwhile, under other
// names).
func noProbeLeft(t *testing.T) {
	t.Helper()
	left, _ := filepath.Glob("/run/netns/snt-*" + tsoffset.ProbeSuffix)
	for deadline := time.Now().Add(2 * time.Second); len(left) > 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		now, _ := filepath.Glob("/run/netns/snt-*" + tsoffset.ProbeSuffix)
		left = slices.DeleteFunc(left, func(n string) bool { return !slices.Contains(now, n) })
	}
	if len(left) > 0 {
		t.Errorf("probe namespaces left behind: %v", left)
	}
}

func stripVolatile(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestFixStalePlanFile applies a saved plan after the rules changed: exit
// 2, nothing changed.
func TestFixStalePlanFile(t *testing.T) {
	ns := fixNS(t, "stale")
	inNS(t, ns, fixNftNat, "nft", "-f", "-")
	out, _, code := runCLI(t, "fix", "--netns", ns.Path(), "--json")
	if code != exitFindings {
		t.Fatalf("plan: exit %d", code)
	}
	plan := filepath.Join(t.TempDir(), "plan.json")
	os.WriteFile(plan, []byte(out), 0o600)
	inNS(t, ns, "", "nft", "add", "rule", "ip", "cni", "postrouting", "counter")
	before := saveAll(t, ns)
	_, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--plan", plan, "--no-backup")
	if code != exitUsage || !strings.Contains(errs, "the ruleset changed since the plan was made; nothing was changed: make a new plan") {
		t.Fatalf("stale plan: exit %d, stderr %q", code, errs)
	}
	if stripVolatile(saveAll(t, ns)) != stripVolatile(before) {
		t.Fatal("a stale plan changed rules")
	}
}

// TestFixMissingIptables runs the fix with a PATH that has the iptables
// save tools but not iptables-legacy-restore: exit 2 naming it, nothing
// changed, the nftables rule in the same plan included.
func TestFixMissingIptables(t *testing.T) {
	ns, before, dir := legacyAndNftNode(t, "nobin")
	var out, errb bytes.Buffer
	cmd := snatrace("fix", "--netns", ns.Path(), "--apply", "--no-backup")
	cmd.Env = append(cmd.Env, "PATH="+dir)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	want := "snatrace: iptables-legacy-restore not found in PATH (install the iptables package); nothing was changed"
	if !ok || ee.ExitCode() != exitUsage || strings.TrimSpace(errb.String()) != want {
		t.Fatalf("missing binary: %v, stderr %q; want exit 2 and %q", err, errb.String(), want)
	}
	if saveAll(t, ns) != before {
		t.Fatal("rules changed although a binary was missing")
	}
}

// TestFixWithoutPrivileges runs the fix as nobody: exit 2 naming
// CAP_NET_ADMIN.
func TestFixWithoutPrivileges(t *testing.T) {
	testenv.NeedRoot(t, "to switch to an unprivileged user")
	bin := nobodyBinary(t)
	for _, args := range [][]string{{"fix"}, {"fix", "--apply", "--no-backup"}} {
		var errb bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"SNATRACE_TEST_MAIN=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.Stderr = &errb
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != exitUsage || !strings.Contains(errb.String(), "needs CAP_NET_ADMIN (run as root)") {
			t.Errorf("unprivileged %v: %v, stderr %q; want exit 2 naming CAP_NET_ADMIN", args, err, errb.String())
		}
	}
}

// TestFixEndToEnd puts a lab node with plain masquerade under the same-port
// workload, fixes it with snatrace fix --apply --netns, and checks that the
// same workload then clashes at least 10 times less (kernel counters).
func TestFixEndToEnd(t *testing.T) {
	testenv.NeedRoot(t, "CAP_NET_ADMIN, CAP_SYS_ADMIN")
	if testing.Short() {
		t.Skip("lab traffic: not in -short")
	}
	for _, backend := range []natrule.Backend{natrule.Nftables, natrule.IptablesNFT, natrule.IptablesLegacy} {
		t.Run(string(backend), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s, err := lab.Open(ctx, lab.Config{Pods: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			plain, _ := natrule.ParseMode("masquerade")
			if err := s.Install(ctx, plain, backend); err != nil {
				t.Fatal(err)
			}
			r, err := s.Round(ctx, 200000, 10)
			if err != nil {
				t.Fatal(err)
			}
			if r.Conntrack.InsertFailed < 10 {
				testenv.Skip(t, "plain masquerade clashed only %d times in %d connections: no race to fix on this machine", r.Conntrack.InsertFailed, r.Connections)
			}
			out, errs, code := runCLI(t, "fix", "--apply", "--netns", s.Node().Path(), "--no-backup")
			if code != exitOK {
				t.Fatalf("fix: exit %d\n%s\n%s", code, out, errs)
			}
			r2, err := s.Round(ctx, r.Connections, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: plain %d clashes in %d connections; after fix %d in %d", backend, r.Conntrack.InsertFailed, r.Connections, r2.Conntrack.InsertFailed, r2.Connections)
			if 10*r2.Conntrack.InsertFailed > r.Conntrack.InsertFailed {
				t.Errorf("after the fix %d clashes, before %d: want at least 10x fewer", r2.Conntrack.InsertFailed, r.Conntrack.InsertFailed)
			}
		})
	}
}

// TestFixWatchCLI runs --apply --watch, lets an owner rewrite its rule
// twice, then stops the watch with SIGTERM: exit 0, every change logged,
// one JSON document with the events.
func TestFixWatchCLI(t *testing.T) {
	ns := fixNS(t, "watch")
	inNS(t, ns, fixNftNat, "nft", "-f", "-")
	backup := filepath.Join(t.TempDir(), "b.json")
	var out, errb bytes.Buffer
	cmd := snatrace("fix", "--apply", "--watch", "--netns", ns.Path(), "--backup", backup, "--json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(inNS(t, ns, "", "nft", "list", "ruleset")) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out; stderr %s", what, errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fixed := func(s string) bool { return strings.Contains(s, "masquerade fully-random") }
	waitFor("first fix", fixed)
	for i := 0; i < 2; i++ {
		inNS(t, ns, "flush chain ip cni postrouting\nadd rule ip cni postrouting ip saddr 10.88.0.0/16 counter masquerade\n", "nft", "-f", "-")
		waitFor("fix after a rewrite", fixed)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch after SIGTERM: %v; stderr %s", err, errb.String())
	}
	var doc struct {
		Mode   string
		Events []struct {
			Trigger string
			Applied []struct{ To string }
		}
	}
	if err := jsonUnmarshal(out.Bytes(), &doc); err != nil || doc.Mode != "watch" || len(doc.Events) < 3 {
		t.Fatalf("watch JSON: %v %+v\n%s", err, doc, out.String())
	}
	// The xtables lock is host-wide: another iptables writer anywhere on the
	// host (a parallel test package) may wake the watch too. What matters is
	// that it started with a fix and that the nftables rewrites woke it.
	nftWakes := 0
	for _, ev := range doc.Events[1:] {
		if ev.Trigger == "nftables" {
			nftWakes++
		}
	}
	if doc.Events[0].Trigger != "start" || nftWakes == 0 {
		t.Errorf("triggers %+v", doc.Events)
	}
	if n := strings.Count(errb.String(), "made 1 rule fully-random"); n < 3 || !strings.Contains(errb.String(), "snatrace fix: stopped") {
		t.Errorf("stderr logs %d changes:\n%s", n, errb.String())
	}
	b, err := os.ReadFile(backup)
	if err != nil || !strings.Contains(string(b), `"applied": true`) {
		t.Errorf("backup after watch: %v\n%s", err, b)
	}
}

// TestFixPartialApply makes iptables-legacy-restore fail after the
// nftables rule of the same plan was committed: the exit is non-zero, and
// the output says which rule is now fully-random and which backup undoes
// it (in JSON too); the rollback then restores it. By default the legacy
// rule is changed (and rolled back) through the kernel interface, which
// needs no iptables-legacy-restore: that apply and its rollback succeed.
func TestFixPartialApply(t *testing.T) {
	// It still says its version (fix asks, to know it can hold the lock).
	failing := []byte("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'iptables-restore v1.8.9 (legacy)'; exit 0; }\necho 'iptables-legacy-restore: simulated failure' >&2\nexit 1\n")
	direct, orig, ddir := legacyAndNftNode(t, "direct")
	os.WriteFile(filepath.Join(ddir, "iptables-legacy-restore"), failing, 0o755)
	dbackup := filepath.Join(t.TempDir(), "d.json")
	cmd := snatrace("fix", "--netns", direct.Path(), "--apply", "--backup", dbackup)
	cmd.Env = append(cmd.Env, "PATH="+ddir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apply through the kernel interface: %v\n%s", err, out)
	}
	if got := saveAll(t, direct); !strings.Contains(got, "-j MASQUERADE --random-fully") || !strings.Contains(got, "masquerade fully-random") {
		t.Fatalf("after the apply through the kernel interface:\n%s", got)
	}
	cmd = snatrace("fix", "--netns", direct.Path(), "--rollback", dbackup)
	cmd.Env = append(cmd.Env, "PATH="+ddir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rollback through the kernel interface: %v\n%s", err, out)
	}
	if got := saveAll(t, direct); stripVolatile(got) != stripVolatile(orig) {
		t.Fatalf("the rollback through the kernel interface did not restore the rules:\n%s\nwant\n%s", got, orig)
	}

	ns, before, dir := legacyAndNftNode(t, "partial")
	os.WriteFile(filepath.Join(dir, "iptables-legacy-restore"), failing, 0o755)
	backup := filepath.Join(t.TempDir(), "b.json")
	var out, errb bytes.Buffer
	cmd = snatrace("fix", "--netns", ns.Path(), "--apply", "--backup", backup, "--json", "--iptables-legacy-via", "iptables-restore")
	cmd.Env = append(cmd.Env, "PATH="+dir)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("partial apply: %v, want a non-zero exit", err)
	}
	var doc struct {
		Result struct {
			Applied []struct{ Backend string }
			Backup  string
			Error   string
		}
	}
	if err := jsonUnmarshal(out.Bytes(), &doc); err != nil || len(doc.Result.Applied) != 1 || doc.Result.Applied[0].Backend != "nftables" || doc.Result.Backup != backup || doc.Result.Error == "" {
		t.Fatalf("partial apply's JSON: %v %+v\n%s\nstderr %s", err, doc, out.String(), errb.String())
	}
	if _, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--rollback", backup); code != exitOK {
		t.Fatalf("rollback: exit %d: %s", code, errs)
	}
	if saveAll(t, ns) != before {
		t.Error("rollback did not restore the rules of the partial apply")
	}
}

// legacyAndNftNode is a namespace with an iptables-legacy and an nftables
// masquerade rule, its rules as saveAll gives them, and a directory for
// PATH holding only the four save tools (a test adds what it needs).
func legacyAndNftNode(t *testing.T, name string) (*netns.NS, string, string) {
	t.Helper()
	ns := fixNS(t, name)
	inNS(t, ns, fixLegacyNat, "iptables-legacy-restore", "-w")
	inNS(t, ns, fixNftNat, "nft", "-f", "-")
	dir := t.TempDir()
	for _, tool := range []string{"iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			testenv.Skip(t, "%v", err)
		}
		os.Symlink(p, filepath.Join(dir, tool))
	}
	return ns, saveAll(t, ns), dir
}

// TestRollbackLeftAlone rolls back a fix after the owner rewrote the fixed
// rule: the rollback must leave the rewritten rule alone, list it, and exit
// 1 (incomplete) rather than 0, in text and in JSON.
func TestRollbackLeftAlone(t *testing.T) {
	ns := fixNS(t, "leftalone")
	inNS(t, ns, fixLegacyNat, "iptables-legacy-restore", "-w")
	backup := filepath.Join(t.TempDir(), "b.json")
	if out, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--apply", "--backup", backup); code != exitOK {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	// The owner rewrites its rule (another subnet, its own --random-fully).
	inNS(t, ns, "*nat\n-R POSTROUTING 1 -s 172.18.0.0/16 ! -o docker0 -j MASQUERADE --random-fully\nCOMMIT\n", "iptables-legacy-restore", "-w", "--noflush")
	rewritten := saveAll(t, ns)
	out, errs, code := runCLI(t, "fix", "--netns", ns.Path(), "--rollback", backup)
	const want = "snatrace fix: rollback incomplete: 1 rule left alone, no longer as the fix left it (rewritten or removed by an owner)\n"
	if code != exitFindings || errs != want || !strings.Contains(out, "Restored 0 rules.\nLeft alone 1 rule") {
		t.Fatalf("rollback: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, want)
	}
	out, _, code = runCLI(t, "fix", "--netns", ns.Path(), "--rollback", backup, "--json")
	var doc struct {
		Rollback struct{ Restored, Missing []struct{ After string } }
	}
	if code != exitFindings || jsonUnmarshal([]byte(out), &doc) != nil || len(doc.Rollback.Restored) != 0 || len(doc.Rollback.Missing) != 1 ||
		doc.Rollback.Missing[0].After != "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE --random-fully" {
		t.Fatalf("rollback --json: exit %d, %+v\n%s", code, doc, out)
	}
	if saveAll(t, ns) != rewritten {
		t.Fatal("the rollback changed the owner's rewritten rule")
	}
}
