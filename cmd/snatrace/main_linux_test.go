//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/vmlab"
	"github.com/snatrace/snatrace/vmlab/vmlabtest"
)

// TestLabWithoutPrivileges runs the lab as an unprivileged user: exit 2 with
// a message that names what is missing and points to sim.
func TestLabWithoutPrivileges(t *testing.T) {
	testenv.NeedRoot(t, "to switch to an unprivileged user")
	bin := nobodyBinary(t)
	var errb bytes.Buffer
	cmd := exec.Command(bin, "lab")
	cmd.Env = []string{"SNATRACE_TEST_MAIN=1"}
	cmd.Stderr = &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	err := cmd.Run()
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
// its partial results, exit 130 or 143 and leave no namespace behind.
func TestLabSignals(t *testing.T) {
	testenv.NeedRoot(t, "CAP_NET_ADMIN, CAP_SYS_ADMIN")
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
			if want := 128 + int(sig); !ok || ee.ExitCode() != want {
				t.Fatalf("after %v: %v, stderr %q; want exit %d", sig, err, errb.String(), want)
			}
			if !strings.Contains(errb.String(), "lab run interrupted") {
				t.Errorf("stderr %q does not say the run was interrupted", errb.String())
			}
			var rep struct {
				Prefix  string `json:"prefix"`
				Stopped string `json:"stopped"`
				Results []struct {
					NAT       string
					Accounted bool
					Note      string
				}
			}
			if err := jsonUnmarshal(out.Bytes(), &rep); err != nil || rep.Stopped != "interrupted" {
				t.Fatalf("partial report: %v %+v\n%s", err, rep, out.String())
			}
			for _, r := range rep.Results {
				if !r.Accounted {
					t.Errorf("%s does not add up after %v: %s", r.NAT, sig, r.Note)
				}
			}
			if left, _ := listNamespaces(rep.Prefix); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// nobodyBinary copies this test binary where the unprivileged user nobody
// can run it, and returns its path; t.Cleanup removes it.
func nobodyBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "snatrace-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := dir + "/snatrace"
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestLabKernelSignal interrupts a lab running in a VM: the guest's lab is
// interrupted in turn, reports its completed rounds, and snatrace exits 130
// with QEMU gone and its work directory removed. An interrupt that lands
// before the guest's first round (during the boot) ends just as cleanly,
// with the report of a run that counted nothing; the test interrupts one
// run that early, then later ones until an interrupt lands in a round.
func TestLabKernelSignal(t *testing.T) {
	deb := vmlabtest.StockKernel(t)
	// At 0.5 s the package is still being unpacked: no guest has started.
	out, stderr := interruptLabKernel(t, deb, 500*time.Millisecond)
	checkBootInterrupted(t, deb, out, stderr)
	for _, wait := range []time.Duration{15 * time.Second, 25 * time.Second, 40 * time.Second} {
		out, stderr := interruptLabKernel(t, deb, wait)
		var rep struct {
			Stopped string `json:"stopped"`
			Results []struct {
				Rounds      int
				Connections int
				Accounted   bool
			}
			VM *struct{ BootSeconds float64 } `json:"vm"`
		}
		if err := jsonUnmarshal(out, &rep); err != nil || rep.Stopped != "interrupted" || rep.VM == nil || len(rep.Results) == 0 {
			t.Fatalf("partial report: %v %+v\n%s\nstderr %s", err, rep, out, stderr)
		}
		if rep.Results[0].Rounds == 0 {
			t.Logf("interrupted after %v, before the guest's first round; again later", wait)
			continue
		}
		for _, r := range rep.Results {
			if !r.Accounted {
				t.Errorf("a result does not add up after the interrupt: %+v", r)
			}
		}
		return
	}
	t.Fatal("no interrupt landed after the guest's first round, the last 40 s after the start")
}

// checkBootInterrupted checks the report of a lab in a VM interrupted
// before its guest reported: the kernel of the package deb (its release as
// Debian names the package), the VM, a result per NAT mode with nothing
// counted, stopped "interrupted".
func checkBootInterrupted(t *testing.T, deb string, out []byte, stderr string) {
	t.Helper()
	var rep struct {
		Kernel  string `json:"kernel"`
		Prefix  string `json:"prefix"`
		Stopped string `json:"stopped"`
		Results []struct {
			NAT         string `json:"nat"`
			Rounds      int    `json:"rounds"`
			Connections int    `json:"connections"`
		} `json:"results"`
		VM *struct {
			VCPUs int `json:"vcpus"`
		} `json:"vm"`
	}
	if err := jsonUnmarshal(out, &rep); err != nil {
		t.Fatalf("interrupted during the boot: %v\nstdout %q\nstderr %s", err, out, stderr)
	}
	release, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(deb), "linux-image-"), "_")
	if rep.Kernel != release || rep.Stopped != "interrupted" || rep.Prefix != "" || rep.VM == nil || rep.VM.VCPUs != 2 {
		t.Errorf("report of the interrupted boot: %+v (VM %+v); want kernel %s, stopped interrupted, no prefix, 2 vCPUs", rep, rep.VM, release)
	}
	if len(rep.Results) != 2 || rep.Results[0].NAT != "masquerade" || rep.Results[1].NAT != "masquerade fully-random" {
		t.Errorf("results %+v: want masquerade and masquerade fully-random", rep.Results)
	}
	for _, r := range rep.Results {
		if r.Rounds != 0 || r.Connections != 0 {
			t.Errorf("result %+v: counted something before the guest ran", r)
		}
	}
	if !strings.Contains(stderr, vmlab.ErrInterrupted.Error()) {
		t.Errorf("stderr %q does not say the VM was stopped", stderr)
	}
}

// interruptLabKernel runs a long lab in a VM, interrupts it after wait and
// returns its output. It fails the test unless snatrace exits 130 and
// leaves no work directory and no process behind.
func interruptLabKernel(t *testing.T, deb string, wait time.Duration) (stdout []byte, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := snatrace("lab", "--kernel", deb, "--connections", "400000", "--json")
	tmp := t.TempDir() // the work directory goes here, apart from other runs'
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(wait) // unpack, build, boot, a round or more
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, stderr %q; want exit 130", err, errb.String())
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "snatrace-vm-*")); len(left) != 0 {
		t.Errorf("work directories left: %v", left)
	}
	if procs := processesMentioning(tmp); len(procs) != 0 {
		t.Errorf("processes left: %v", procs)
	}
	return out.Bytes(), errb.String()
}

// processesMentioning returns the command lines of processes that contain s.
func processesMentioning(s string) []string {
	var found []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
			found = append(found, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}
