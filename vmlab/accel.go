package vmlab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// AccelEnv names the environment variable that forces the accelerator:
// "kvm" or "tcg". Unset, KVM is used when /dev/kvm opens and a probe boot
// shows it can run the kernel (see accelerator).
const AccelEnv = "SNATRACE_VM_ACCEL"

// probeTimeout bounds the probe boot: under KVM a kernel prints its
// banner within a second of QEMU's start.
var probeTimeout = 10 * time.Second

// probeBanner is the first line the kernel prints on its early console.
const probeBanner = "Linux version "

// probed is the probe's verdict, once per process (it is a property of the
// host): why KVM is not used, "" when it is.
var probed struct {
	sync.Mutex
	done bool
	why  string
}

// accelerator returns the accelerator for booting k: "kvm" when /dev/kvm
// can be opened for writing and a probe boot of k under KVM reaches the
// kernel's banner, else "tcg" (multi-threaded emulation) with the reason
// KVM was passed over ("" when there is no /dev/kvm: the usual case, not
// worth a word). A /dev/kvm that cannot run a guest is common under nested
// virtualisation: QEMU aborts setting an MSR the outer hypervisor refuses,
// or the guest hangs as it enters protected mode. AccelEnv overrides both
// checks.
func accelerator(ctx context.Context, qemu string, k *Kernel, o VMOptions) (accel, why string, err error) {
	switch v := os.Getenv(AccelEnv); v {
	case "kvm", "tcg":
		return v, "", nil
	case "":
	default:
		return "", "", fmt.Errorf("%s=%q: want kvm or tcg", AccelEnv, v)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", "", nil
	}
	f.Close()
	probed.Lock()
	defer probed.Unlock()
	if !probed.done {
		why := probeKVM(ctx, qemu, k, o)
		if ctx.Err() != nil {
			return "tcg", "", nil // interrupted: no verdict, and the run stops anyway
		}
		probed.done, probed.why = true, why
	}
	if probed.why != "" {
		return "tcg", probed.why, nil
	}
	return "kvm", "", nil
}

// probeKVM boots k under KVM without an initramfs, with its early console
// on the serial line, until the kernel's banner appears: "" when it does,
// else what went wrong. QEMU is killed either way.
func probeKVM(ctx context.Context, qemu string, k *Kernel, o VMOptions) string {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	args := append([]string{"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-m", "256", "-smp", fmt.Sprint(o.VCPUs), "-kernel", k.Image,
		"-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1", "-serial", "stdio"}, kvmArgs...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = ownProcessGroup()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err.Error()
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err.Error()
	}
	last := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, probeBanner) {
			cancel() // kills QEMU
			cmd.Wait()
			return ""
		}
		if line != "" {
			last = line
		}
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Sprintf("the kernel printed nothing under KVM within %v (last console line %q)", probeTimeout, last)
	case werr != nil:
		return fmt.Sprintf("QEMU failed under KVM: %v (%s)", werr, last)
	}
	return fmt.Sprintf("QEMU exited under KVM before the kernel's banner (%s)", last)
}

// kvmArgs and tcgArgs are QEMU's accelerator and CPU model arguments.
var (
	kvmArgs = []string{"-accel", "kvm", "-cpu", "host"}
	tcgArgs = []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
)
