package vmlab

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// SNATRACE_VM_ACCEL decides without a probe; anything but kvm or tcg is
// refused, naming the variable.
func TestAcceleratorEnv(t *testing.T) {
	for _, v := range []string{"kvm", "tcg"} {
		t.Setenv(AccelEnv, v)
		// No QEMU and no kernel: a probe would fail.
		accel, why, err := accelerator(context.Background(), "/nonexistent/qemu", nil, VMOptions{})
		if accel != v || why != "" || err != nil {
			t.Errorf("%s=%s: %q %q %v", AccelEnv, v, accel, why, err)
		}
	}
	t.Setenv(AccelEnv, "hvf")
	_, _, err := accelerator(context.Background(), "/nonexistent/qemu", nil, VMOptions{})
	if err == nil || err.Error() != `SNATRACE_VM_ACCEL="hvf": want kvm or tcg` {
		t.Errorf("hvf: %v", err)
	}
}

// probeKVM tells a QEMU whose kernel reaches its banner from one that
// aborts and one whose guest hangs, as fake QEMUs act them out.
func TestProbeKVM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake QEMUs are shell scripts")
	}
	probeTimeout = 2 * time.Second
	t.Cleanup(func() { probeTimeout = 10 * time.Second })
	k := &Kernel{Image: "/boot/vmlinuz"}
	for _, tc := range []struct {
		name, script, want string
	}{
		{"boots", `echo "Probing EDD (edd=off to disable)... ok"; echo "[    0.000000] Linux version 6.1.0-57-cloud-amd64"; exec sleep 30`, ""},
		{"aborts", `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"; kill -ABRT $$`,
			`QEMU failed under KVM: signal: aborted (qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69)`},
		{"hangs", `echo "Probing EDD (edd=off to disable)... ok"; exec sleep 30`,
			`the kernel printed nothing under KVM within 2s (last console line "Probing EDD (edd=off to disable)... ok")`},
		{"exits", `echo "qemu: could not open kernel file"; exit 1`,
			`QEMU failed under KVM: exit status 1 (qemu: could not open kernel file)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu := filepath.Join(t.TempDir(), "qemu")
			if err := os.WriteFile(qemu, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got := probeKVM(context.Background(), qemu, k, VMOptions{VCPUs: 2})
			if got != tc.want {
				t.Errorf("probe: %q, want %q", got, tc.want)
			}
			if took := time.Since(start); took > probeTimeout+3*time.Second || !strings.Contains(tc.name, "hangs") && took > 2*time.Second {
				t.Errorf("the probe took %v", took)
			}
		})
	}
}
