package vmlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/vmlab/guest"
)

// Options of a lab run on another kernel.
type Options struct {
	// Kernel is a bzImage or a Debian kernel package; Modules, if set, the
	// modules directory to use (OpenKernel).
	Kernel, Modules string
	// Args are the lab's own flags, passed to the lab in the guest, which
	// prints JSON.
	Args []string
	// Backends are the lab's rule backends (their tools are copied in).
	Backends []natrule.Backend
	// HTML asks the guest for the lab's HTML report too.
	HTML bool
	// Terminal says the console is a terminal (the guest draws its
	// progress bar).
	Terminal bool
	// Binary is the snatrace binary for the guest; "" is this executable.
	Binary string
	VM     VMOptions
}

// Outcome is a lab run in a VM.
type Outcome struct {
	// Report is the guest lab's report with the VM block; nil when the lab
	// failed before it reported.
	Report *lab.Report
	// Exit is the guest lab's exit code.
	Exit int
	// HTML is the guest lab's HTML report, when asked.
	HTML []byte
	// Log is the tail of the guest's console.
	Log string
	// NoModules is true when the kernel was booted without a modules
	// directory: features it builds as modules were missing.
	NoModules bool
	// Release is the kernel's release, and VM how it was (or was to be)
	// booted: set whenever the lab got as far as booting, also with
	// ErrInterrupted, when the guest had no report to give (VM has no
	// Accelerator when QEMU never started).
	Release string
	VM      *lab.VM
}

// guestReport is where the guest writes the HTML report.
const guestReport = "/run/snatrace-report.html"

// Lab boots the kernel and runs the lab in it. An error means no lab ran to
// its end (bad input, a missing tool, a guest that died); a lab that ran and
// exited non-zero is an Outcome with its Exit. When ctx ends before the
// guest reported (during its boot), the error is ErrInterrupted and the
// Outcome, without a Report, still says what was booted and how.
func Lab(ctx context.Context, o Options) (*Outcome, error) {
	work, err := os.MkdirTemp("", "snatrace-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	k, err := OpenKernel(o.Kernel, o.Modules, work)
	if err != nil {
		return nil, err
	}
	cfg := guest.Config{Args: append(append([]string{"lab"}, o.Args...), "--json"), Terminal: o.Terminal}
	if o.HTML {
		cfg.ReportPath = guestReport
		cfg.Args = append(cfg.Args, "--report", guestReport)
	}
	img, err := BuildImage(k, work, ImageOptions{Binary: o.Binary, Backends: o.Backends, Guest: cfg})
	if err != nil {
		return nil, err
	}
	vm := o.VM
	vm.Env = append(vm.Env, snatraceEnv()...)
	run, err := Boot(ctx, k, img, work, vm)
	if errors.Is(err, ErrInterrupted) {
		return &Outcome{Log: run.Log, NoModules: k.Modules == nil, Release: k.Release, VM: &run.VM}, err
	}
	if err != nil {
		return nil, err
	}
	out := &Outcome{Exit: run.Result.Exit, HTML: run.Result.Report, Log: run.Log, NoModules: k.Modules == nil,
		Release: k.Release, VM: &run.VM}
	if len(bytes.TrimSpace(run.Result.Stdout)) == 0 {
		return out, nil // the guest's messages say why
	}
	var rep lab.Report
	if err := json.Unmarshal(run.Result.Stdout, &rep); err != nil {
		return out, fmt.Errorf("the guest's lab report: %w", err)
	}
	rep.VM = out.VM
	out.Report = &rep
	return out, nil
}

// snatraceEnv returns the host's SNATRACE_* settings, for the guest.
func snatraceEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SNATRACE_") && !strings.ContainsAny(kv, " \t\n\"") {
			env = append(env, kv)
		}
	}
	return env
}
