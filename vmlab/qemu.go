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
	"syscall"
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

// Boot boots k with img under QEMU and waits for the guest's result. The QEMU
// process is killed when ctx ends or the timeout passes; its files are in
// work.
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
	accel := accelerator()
	resultFile := filepath.Join(work, "result")
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, qemuArgs(k, img, accel, resultFile, o)...)
	con := &console{out: o.Console}
	cmd.Stdout, cmd.Stderr = con, con
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's Ctrl-C reaches snatrace, which stops QEMU
	cmd.WaitDelay = 5 * time.Second
	run := &Run{VM: lab.VM{Accelerator: accel, VCPUs: o.VCPUs, MemoryMiB: o.MemoryMiB, QEMU: qemuVersion(qemu),
		Package: k.Package, Image: k.imageName(), InitramfsBytes: img.Bytes, InitramfsModules: img.Modules,
		InitramfsSeconds: img.Took.Seconds(), Tools: img.Tools}}
	start := time.Now()
	err = cmd.Run()
	run.VM.WallSeconds = time.Since(start).Seconds()
	run.Log = con.snapshot()
	con.mu.Lock()
	if !con.started.IsZero() {
		run.VM.BootSeconds = con.started.Sub(start).Seconds()
		run.VM.GuestBootSeconds, _ = strconv.ParseFloat(con.guestUp, 64)
	}
	run.VM.ModulesLoaded = con.modules
	con.mu.Unlock()
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return run, fmt.Errorf("the VM did not finish within %v (--vm-timeout); last console lines:\n%s", o.Timeout, lastLines(run.Log, 15))
		}
		return run, ErrInterrupted
	}
	if err != nil {
		return run, fmt.Errorf("%s: %w; last console lines:\n%s", QEMU, err, lastLines(run.Log, 15))
	}
	b, _ := os.ReadFile(resultFile)
	if run.Result, err = guest.ReadResult(b); err != nil {
		return run, fmt.Errorf("%w (kernel panic, or not enough memory? --memory); last console lines:\n%s", err, lastLines(run.Log, 25))
	}
	return run, nil
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

// accelerator returns "kvm" when /dev/kvm can be opened for writing, and
// "tcg" (multi-threaded emulation) otherwise.
func accelerator() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	return "kvm"
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
		return append(args, "-accel", "kvm", "-cpu", "host")
	}
	return append(args, "-accel", "tcg,thread=multi", "-cpu", "max")
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
