package vmlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/vmlab/guest"
)

// QEMU is the emulator binary used.
const QEMU = "qemu-system-x86_64"

// Defaults of VMOptions.
const (
	DefaultVCPUs     = 2
	DefaultMemoryMiB = 1024
	DefaultTimeout   = time.Hour
)

// VMOptions tune the virtual machine.
type VMOptions struct {
	VCPUs     int           // 0: DefaultVCPUs
	MemoryMiB int           // 0: DefaultMemoryMiB
	Timeout   time.Duration // the whole run, boot included; 0: DefaultTimeout
	// Console receives what the guest's command prints (its progress and
	// messages), as it prints it; nil discards it.
	Console io.Writer
	// Env are KEY=VALUE settings given to the guest's init (on the kernel
	// command line: no spaces).
	Env []string
}

// Run is the outcome of one boot.
type Run struct {
	Result guest.Result
	VM     lab.VM
	// Log is the tail of the guest's console.
	Log string
}

// ErrInterrupted is returned when the context ended the VM before it
// finished.
var ErrInterrupted = errors.New("the VM was stopped before the guest finished")

// Boot boots k with img under QEMU and waits for the guest's result. When
// ctx ends, the guest's command is interrupted (as by Ctrl-C: the lab
// reports the rounds it completed) and QEMU is given InterruptGrace to power
// off before it is killed; after the timeout it is killed at once. Its files
// are in work. A ctx that ended before QEMU started (during the KVM probe,
// or before Boot) starts none: the Run, with the VM as it would have been
// booted, comes with ErrInterrupted.
func Boot(ctx context.Context, k *Kernel, img *Image, work string, o VMOptions) (*Run, error) {
	o = o.withDefaults()
	qemu, err := exec.LookPath(QEMU)
	if err != nil {
		return nil, &MissingError{What: QEMU + " not found in PATH: install QEMU (Debian: apt install qemu-system-x86)"}
	}
	for _, kv := range o.Env {
		if strings.ContainsAny(kv, " \t\n\"") || !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("guest setting %q: want KEY=VALUE without spaces or quotes", kv)
		}
	}
	run := &Run{VM: lab.VM{VCPUs: o.VCPUs, MemoryMiB: o.MemoryMiB, QEMU: qemuVersion(qemu),
		Package: k.Package, Image: k.imageName(), InitramfsBytes: img.Bytes, InitramfsModules: img.Modules,
		InitramfsSeconds: img.Took.Seconds(), Tools: img.Tools}}
	if ctx.Err() != nil {
		return run, ErrInterrupted // before QEMU started
	}
	accel, why, err := accelerator(ctx, qemu, k, o, work)
	switch {
	case ctx.Err() != nil:
		return run, ErrInterrupted
	case err != nil:
		return nil, err
	}
	run.VM.Accelerator = accel
	if why != "" && o.Console != nil {
		fmt.Fprintf(o.Console, "snatrace lab: /dev/kvm cannot run this guest (%s): booting it with TCG emulation instead (%s=kvm forces KVM)\n", why, AccelEnv)
	}
	resultFile := filepath.Join(work, "result")
	cmd := exec.Command(qemu, qemuArgs(k, img, accel, resultFile, o)...)
	con := &console{out: o.Console}
	cmd.Stdout, cmd.Stderr = con, con
	cmd.SysProcAttr = ownProcessGroup() // a terminal's Ctrl-C reaches snatrace, which stops QEMU
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", QEMU, err)
	}
	end, err := supervise(ctx, cmd, stdin, o.Timeout)
	run.record(con, start)
	switch {
	case end == endTimeout:
		return run, fmt.Errorf("the VM did not finish within %v (--vm-timeout); last console lines:\n%s", o.Timeout, lastLines(run.Log, 15))
	case end == endNormal && err != nil:
		return run, fmt.Errorf("%s: %w; last console lines:\n%s", QEMU, err, lastLines(run.Log, 15))
	}
	b, _ := os.ReadFile(resultFile)
	if run.Result, err = guest.ReadResult(b); err != nil {
		if end == endInterrupted {
			return run, ErrInterrupted
		}
		return run, fmt.Errorf("%w (kernel panic, or not enough memory? --memory); last console lines:\n%s", err, lastLines(run.Log, 25))
	}
	return run, nil
}

// InterruptGrace is how long an interrupted guest has to report and power
// off before QEMU is killed.
const InterruptGrace = 30 * time.Second

// How a VM ended.
type vmEnd int

const (
	endNormal      vmEnd = iota // QEMU exited by itself
	endInterrupted              // ctx ended: the guest was interrupted
	endTimeout                  // the timeout passed: QEMU was killed
)

// supervise waits for QEMU, interrupting the guest when ctx ends and killing
// QEMU after the grace or the timeout. It returns how the VM ended and
// QEMU's exit error.
func supervise(ctx context.Context, cmd *exec.Cmd, stdin io.WriteCloser, timeout time.Duration) (vmEnd, error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case err := <-done:
		return endNormal, err
	case <-deadline.C:
		cmd.Process.Kill()
		return endTimeout, <-done
	case <-ctx.Done():
	}
	fmt.Fprintln(stdin, guest.InterruptLine)
	grace := time.NewTimer(InterruptGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		return endInterrupted, err
	case <-grace.C:
	case <-deadline.C:
	}
	cmd.Process.Kill()
	return endInterrupted, <-done
}

// record notes the run's times and the console's findings.
func (run *Run) record(con *console, start time.Time) {
	run.VM.WallSeconds = time.Since(start).Seconds()
	run.Log = con.snapshot()
	con.mu.Lock()
	defer con.mu.Unlock()
	if !con.started.IsZero() {
		run.VM.BootSeconds = con.started.Sub(start).Seconds()
		run.VM.GuestBootSeconds, _ = strconv.ParseFloat(con.guestUp, 64)
	}
	run.VM.ModulesLoaded = con.modules
}

func (o VMOptions) withDefaults() VMOptions {
	if o.VCPUs <= 0 {
		o.VCPUs = DefaultVCPUs
	}
	if o.MemoryMiB <= 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

func qemuArgs(k *Kernel, img *Image, accel, resultFile string, o VMOptions) []string {
	cmdline := append([]string{"console=ttyS0", "quiet", "loglevel=3", "panic=-1", "rdinit=/init"}, o.Env...)
	args := []string{
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.VCPUs),
		"-kernel", k.Image, "-initrd", img.Path, "-append", strings.Join(cmdline, " "),
		"-serial", "stdio", "-serial", "file:" + resultFile,
	}
	if accel == "kvm" {
		return append(args, kvmArgs...)
	}
	return append(args, tcgArgs...)
}

// qemuVersion returns the version QEMU prints ("7.2.22"), or "".
func qemuVersion(qemu string) string {
	out, err := exec.Command(qemu, "-version").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "version" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}
