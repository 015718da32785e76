package vmlab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// SNATRACE_VM_ACCEL decides without a probe; anything but kvm or tcg is
// refused, naming the variable.
func TestAcceleratorEnv(t *testing.T) {
	for _, v := range []string{"kvm", "tcg"} {
		t.Setenv(AccelEnv, v)
		// No QEMU and no kernel: a probe would fail.
		accel, why, err := accelerator(context.Background(), "/nonexistent/qemu", nil, VMOptions{}, t.TempDir())
		if accel != v || why != "" || err != nil {
			t.Errorf("%s=%s: %q %q %v", AccelEnv, v, accel, why, err)
		}
	}
	t.Setenv(AccelEnv, "hvf")
	_, _, err := accelerator(context.Background(), "/nonexistent/qemu", nil, VMOptions{}, t.TempDir())
	if err == nil || err.Error() != `SNATRACE_VM_ACCEL="hvf": want kvm or tcg` {
		t.Errorf("hvf: %v", err)
	}
}

// probeKVM tells a QEMU whose kernel reaches its banner from one that
// aborts, one whose guest hangs and one that cannot start, as fake QEMUs
// act them out; it returns in bounded time even when a child of QEMU
// keeps the console open, and runs in the work directory.
func TestProbeKVM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake QEMUs are shell scripts")
	}
	probeTimeout = 2 * time.Second
	t.Cleanup(func() { probeTimeout = 10 * time.Second })
	k := &Kernel{Image: "/boot/vmlinuz"}
	for _, tc := range []struct {
		name, script, want string
		took               time.Duration // at most
	}{
		{"boots", `echo "Probing EDD (edd=off to disable)... ok"; echo "[    0.000000] Linux version 6.1.0-57-cloud-amd64"; sleep 30`, "", time.Second},
		{"aborts", `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"
echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed."; kill -ABRT $$`,
			`QEMU failed under KVM: signal: aborted (qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69)`, time.Second},
		{"hangs", `echo "Probing EDD (edd=off to disable)... ok"; sleep 30`,
			`the kernel printed nothing under KVM within 2s (last console line "Probing EDD (edd=off to disable)... ok")`, 4 * time.Second},
		{"exits", `echo "qemu: could not open kernel file"; exit 1`,
			`QEMU failed under KVM: exit status 1 (qemu: could not open kernel file)`, time.Second},
		{"work", `pwd > where; echo "Linux version 6.1"; exec sleep 30`, "", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			qemu := filepath.Join(t.TempDir(), "qemu")
			if err := os.WriteFile(qemu, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got := probeKVM(context.Background(), qemu, k, VMOptions{VCPUs: 2}, work)
			if got != tc.want {
				t.Errorf("probe: %q, want %q", got, tc.want)
			}
			if took := time.Since(start); took > tc.took {
				t.Errorf("the probe took %v, want at most %v", took, tc.took)
			}
			if tc.name == "work" {
				if b, err := os.ReadFile(filepath.Join(work, "where")); err != nil || string(b) != work+"\n" {
					t.Errorf("the probe ran in %q (%v), want %s", b, err, work)
				}
			}
		})
	}
}

// An interrupt during the probe ends it at once, with the context's error
// and no verdict remembered.
func TestProbeInterrupted(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake QEMU is a shell script")
	}
	dev := filepath.Join(t.TempDir(), "kvm") // a /dev/kvm that opens
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kvmDevice = dev
	t.Cleanup(func() { kvmDevice = "/dev/kvm" })
	t.Setenv(AccelEnv, "")
	qemu := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(qemu, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	k := &Kernel{Image: filepath.Join(t.TempDir(), "interrupted-vmlinuz")}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	accel, _, err := accelerator(ctx, qemu, k, VMOptions{VCPUs: 1}, t.TempDir())
	if !errors.Is(err, context.DeadlineExceeded) || accel != "" || time.Since(start) > 2*time.Second {
		t.Errorf("interrupted probe: %q %v after %v", accel, err, time.Since(start))
	}
	probed.Lock()
	_, kept := probed.why[k.Image]
	probed.Unlock()
	if kept {
		t.Error("an interrupted probe left a verdict")
	}
}
