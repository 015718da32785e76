package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/vmlab/vmlabtest"
)

// Bad --kernel input gets a message naming what is wrong and exit 2, before
// anything boots.
func TestLabKernelBadInput(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "hostname")
	os.WriteFile(text, []byte("node-1\n"), 0o644)
	image := filepath.Join(dir, "vmlinuz-6.1.0-99-test")
	os.WriteFile(image, vmlabtest.FakeImage("6.1.0-99-test"), 0o644)
	noMods := vmlabtest.WriteDeb(t, dir, vmlabtest.Deb{Release: "6.1.0-98-test", Image: true})
	emptyPath := t.TempDir()
	// Work directories go to this test's own TMPDIR: another VM run's in
	// /tmp is not this test's to judge.
	tmp := t.TempDir()
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"lab", "--vcpus", "4"}, nil, "snatrace: --vcpus: only used with --kernel"},
		{[]string{"lab", "--modules", dir}, nil, "snatrace: --modules: only used with --kernel"},
		{[]string{"lab", "--kernel", image, "--vcpus", "0"}, nil, "snatrace: --vcpus: 0 is out of range 1..64"},
		{[]string{"lab", "--kernel", image, "--memory", "64"}, nil, "snatrace: --memory: 64 MiB is out of range 256..65536"},
		{[]string{"lab", "--kernel", image, "--trace"}, nil, "snatrace: --trace: not available with --kernel yet"},
		{[]string{"lab", "--kernel", text}, nil, "snatrace: --kernel: " + text + ": not a kernel image (bzImage) or a Debian kernel package (.deb)"},
		{[]string{"lab", "--kernel", filepath.Join(dir, "nope.deb")}, nil, "no such file or directory"},
		{[]string{"lab", "--kernel", noMods}, nil, "holds no lib/modules/6.1.0-98-test: a package without modules? give --modules DIR"},
		{[]string{"lab", "--kernel", image, "--backend", "iptables-legacy"}, []string{"PATH=" + emptyPath},
			"--backend iptables-legacy: the guest gets the host's iptables-legacy-save, which is not installed here"},
		{[]string{"lab", "--kernel", image}, []string{"PATH=" + emptyPath}, "qemu-system-x86_64 not found in PATH: install QEMU (Debian: apt install qemu-system-x86)"},
		{[]string{"lab", "--kernel", image}, []string{"SNATRACE_VM_ACCEL=hvf"}, `snatrace: SNATRACE_VM_ACCEL="hvf": want kvm or tcg`},
	}
	for _, tt := range tests {
		cmd := snatrace(tt.args...)
		cmd.Env = append(cmd.Env, append([]string{"TMPDIR=" + tmp}, tt.env...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		// Usage errors come before anything is unpacked or booted.
		if code != exitUsage || !strings.Contains(errb.String(), tt.want) || out.Len() != 0 ||
			strings.Contains(tt.want, "SNATRACE_VM_ACCEL") && strings.Contains(errb.String(), "booting") {
			t.Errorf("snatrace %v: exit %d, stderr %q, stdout %q; want exit 2 and %q", tt.args, code, errb.String(), out.String(), tt.want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "snatrace-vm-*")); len(left) != 0 {
		t.Errorf("work directories left: %v", left)
	}
}
