package vmlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// AccelEnv names the environment variable that forces the accelerator:
// "kvm" or "tcg". Unset, KVM is used when /dev/kvm opens and a probe boot
// shows it can run the kernel (see accelerator).
const AccelEnv = "SNATRACE_VM_ACCEL"

// ForcedAccel returns the accelerator AccelEnv forces ("kvm", "tcg"), ""
// when it is unset, or an error naming the variable for any other value:
// a caller can check it before it unpacks and builds anything.
func ForcedAccel() (string, error) {
	switch v := os.Getenv(AccelEnv); v {
	case "kvm", "tcg", "":
		return v, nil
	default:
		return "", fmt.Errorf("%s=%q: want kvm or tcg", AccelEnv, v)
	}
}

// probeTimeout bounds the probe boot: under KVM a kernel prints its
// banner within a second of QEMU's start.
var probeTimeout = 10 * time.Second

// kvmDevice is KVM's device: a variable for tests.
var kvmDevice = "/dev/kvm"

// probeBanner is the first line the kernel prints on its early console.
const probeBanner = "Linux version "

// probed holds the probes' verdicts, per kernel image, for the process:
// why KVM is not used for it, "" when it is.
var probed struct {
	sync.Mutex
	why map[string]string
}

// accelerator returns the accelerator for booting k: "kvm" when /dev/kvm
// can be opened for writing and a probe boot of k under KVM reaches the
// kernel's banner, else "tcg" (multi-threaded emulation) with the reason
// KVM was passed over ("" when there is no /dev/kvm: the usual case, not
// worth a word). A /dev/kvm that cannot run a guest is common under nested
// virtualisation: QEMU aborts setting an MSR the outer hypervisor refuses,
// or the guest hangs as it enters protected mode. AccelEnv overrides both
// checks. The probe runs in work; an error is a bad AccelEnv or ctx's,
// when it ended during the probe.
func accelerator(ctx context.Context, qemu string, k *Kernel, o VMOptions, work string) (accel, why string, err error) {
	if v, err := ForcedAccel(); v != "" || err != nil {
		return v, "", err
	}
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return "tcg", "", nil
	}
	f.Close()
	probed.Lock()
	defer probed.Unlock()
	why, ok := probed.why[k.Image]
	if !ok {
		why = probeKVM(ctx, qemu, k, o, work)
		if ctx.Err() != nil {
			return "", "", ctx.Err() // no verdict
		}
		if probed.why == nil {
			probed.why = map[string]string{}
		}
		probed.why[k.Image] = why
	}
	if why != "" {
		return "tcg", why, nil
	}
	return "kvm", "", nil
}

// probeKVM boots k under KVM without an initramfs, with its early console
// on the serial line, until the kernel's banner appears: "" when it does,
// else what went wrong. It returns within probeTimeout and a second: QEMU
// and anything it started are killed (its process group), and a pipe
// still held open after that is closed. It runs in work, where a QEMU
// that aborts leaves its core file.
func probeKVM(ctx context.Context, qemu string, k *Kernel, o VMOptions, work string) string {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	image, err := filepath.Abs(k.Image)
	if err != nil {
		return err.Error()
	}
	args := append([]string{"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-m", "256", "-smp", fmt.Sprint(o.VCPUs), "-kernel", image,
		"-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1", "-serial", "stdio"}, kvmArgs...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Dir = work
	cmd.SysProcAttr = ownProcessGroup()
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = time.Second
	out := &probeOutput{banner: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err.Error()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case <-out.banner:
		cancel() // kills QEMU
		<-done
		return ""
	case werr = <-done:
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Sprintf("the kernel printed nothing under KVM within %v (last console line %q)", probeTimeout, out.last())
	case werr != nil:
		return fmt.Sprintf("QEMU failed under KVM: %v (%s)", werr, out.last())
	}
	return fmt.Sprintf("QEMU exited under KVM before the kernel's banner (%s)", out.last())
}

// probeOutput is what the probed QEMU prints: it closes banner when the
// kernel's banner appears, and keeps the line that best says what went
// wrong otherwise.
type probeOutput struct {
	mu     sync.Mutex
	line   []byte
	lines  []string // the last few non-empty lines
	seen   bool
	banner chan struct{}
}

func (p *probeOutput) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range b {
		if c != '\n' {
			p.line = append(p.line, c)
			continue
		}
		p.add(strings.TrimSpace(string(p.line)))
		p.line = p.line[:0]
	}
	return len(b), nil
}

func (p *probeOutput) add(line string) {
	if strings.Contains(line, probeBanner) && !p.seen {
		p.seen = true
		close(p.banner)
	}
	if line != "" {
		p.lines = append(p.lines, line)
		if len(p.lines) > 8 {
			p.lines = p.lines[1:]
		}
	}
}

// last returns QEMU's own error line when it printed one ("qemu-...:
// error: failed to set MSR ..."), else the last line printed.
func (p *probeOutput) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.line) > 0 {
		p.add(strings.TrimSpace(string(p.line)))
		p.line = p.line[:0]
	}
	for _, l := range p.lines {
		if strings.Contains(l, "error:") {
			return l
		}
	}
	if len(p.lines) == 0 {
		return ""
	}
	return p.lines[len(p.lines)-1]
}

// kvmArgs and tcgArgs are QEMU's accelerator and CPU model arguments.
var (
	kvmArgs = []string{"-accel", "kvm", "-cpu", "host"}
	tcgArgs = []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
)
