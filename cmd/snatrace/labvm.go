package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/snatrace/snatrace/lab"
	"github.com/snatrace/snatrace/vmlab"
)

// vmFlags are snatrace lab's flags for a run on another kernel.
type vmFlags struct {
	kernel, modules string
	vcpus, memory   int
	timeout         time.Duration
}

// vmOnly are the flags the host keeps: everything else goes to the guest.
var vmOnly = map[string]bool{"kernel": true, "modules": true, "vcpus": true, "memory": true, "vm-timeout": true, "json": true, "report": true}

func (v *vmFlags) register(f *pflag.FlagSet) {
	f.StringVar(&v.kernel, "kernel", "", "run in a VM booting this kernel: a bzImage or a Debian linux-image .deb (needs qemu-system-x86, not root)")
	f.StringVar(&v.modules, "modules", "", "with --kernel: its modules directory (lib/modules/RELEASE), if not in the package or /lib/modules")
	f.IntVar(&v.vcpus, "vcpus", vmlab.DefaultVCPUs, "with --kernel: the VM's CPUs")
	f.IntVar(&v.memory, "memory", vmlab.DefaultMemoryMiB, "with --kernel: the VM's memory in MiB")
	f.DurationVar(&v.timeout, "vm-timeout", vmlab.DefaultTimeout, "with --kernel: stop the VM after this long, boot included")
}

func (v *vmFlags) check(cmd *cobra.Command) error {
	changed := cmd.Flags().Changed
	if v.kernel == "" {
		for _, name := range []string{"modules", "vcpus", "memory", "vm-timeout"} {
			if changed(name) {
				return usageErr("--%s: only used with --kernel", name)
			}
		}
		return nil
	}
	switch {
	case v.vcpus < 1 || v.vcpus > 64:
		return usageErr("--vcpus: %d is out of range 1..64", v.vcpus)
	case v.memory < 256 || v.memory > 65536:
		return usageErr("--memory: %d MiB is out of range 256..65536", v.memory)
	case v.timeout <= 0:
		return usageErr("--vm-timeout: %v must be positive", v.timeout)
	case changed("trace"):
		return usageErr("--trace: not available with --kernel yet (the guest has no BTF file system)")
	}
	if _, err := vmlab.ForcedAccel(); err != nil {
		return usageErr("%v", err)
	}
	return nil
}

// guestArgs returns the lab flags the user set, for the lab in the guest.
func guestArgs(cmd *cobra.Command) []string {
	var args []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if vmOnly[f.Name] {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return args
}

// runLabVM runs the lab in a VM booting --kernel.
func runLabVM(cmd *cobra.Command, fl labFlags, cfg lab.Config) error {
	stderr := cmd.ErrOrStderr()
	f, isFile := stderr.(*os.File)
	terminal := isFile && term.IsTerminal(int(f.Fd()))
	o := vmlab.Options{
		Kernel: fl.vm.kernel, Modules: fl.vm.modules, Args: guestArgs(cmd), Backends: cfg.Backends,
		HTML: fl.reportFile != "", Terminal: terminal,
		VM: vmlab.VMOptions{VCPUs: fl.vm.vcpus, MemoryMiB: fl.vm.memory, Timeout: fl.vm.timeout, Console: stderr},
	}
	fmt.Fprintf(stderr, "snatrace lab: booting %s under QEMU (%d vCPUs, %d MiB)\n", fl.vm.kernel, fl.vm.vcpus, fl.vm.memory)
	out, err := vmlab.Lab(cmd.Context(), o)
	switch {
	case errors.Is(err, vmlab.ErrInterrupted) && out != nil:
		return labVMInterrupted(cmd, fl, cfg, out)
	case errors.Is(err, vmlab.ErrInterrupted):
		return &exitError{code: signalCode(cmd), err: err}
	case err != nil: // a missing tool (vmlab.MissingError), not a kernel, a failed boot
		return envErr(err)
	case out.Report == nil && cmd.Context().Err() != nil:
		return &exitError{code: signalCode(cmd), err: vmlab.ErrInterrupted}
	case out.Report == nil:
		hint := ""
		if out.NoModules {
			hint = " (the kernel was booted without modules: no --modules and no /lib/modules for its release; what it builds as modules is missing)"
		}
		return &exitError{code: max(out.Exit, exitUsage), err: fmt.Errorf("the lab in the guest failed (exit %d) before it reported; its messages are above%s", out.Exit, hint)}
	}
	if err := writeLab(cmd.OutOrStdout(), stderr, labFlags{asJSON: fl.asJSON}, out.Report); err != nil {
		return envErr(err)
	}
	if fl.reportFile != "" {
		if err := os.WriteFile(fl.reportFile, out.HTML, 0o644); err != nil {
			return envErr(fmt.Errorf("--report: %w", err))
		}
		fmt.Fprintf(stderr, "report written to %s (by the lab in the guest)\n", fl.reportFile)
	}
	if cmd.Context().Err() != nil {
		return &exitError{code: signalCode(cmd), err: errors.New("lab run in the VM interrupted: the rounds completed are above")}
	}
	if out.Exit != 0 {
		return silentExit(out.Exit)
	}
	return nil
}

// labVMInterrupted reports a lab in a VM interrupted before its guest
// reported: the report of a run that counted nothing, stopped
// "interrupted", on the booted kernel (as the lab on the host reports an
// interrupt before its first round), then the interrupt's exit code.
func labVMInterrupted(cmd *cobra.Command, fl labFlags, cfg lab.Config, out *vmlab.Outcome) error {
	rep := lab.NewReport(cfg, out.Release, out.VM.VCPUs)
	rep.VM, rep.Stopped = out.VM, "interrupted"
	rep.Prefix = "" // the guest chooses its own, and made nothing
	rep.Finish()
	if err := writeLab(cmd.OutOrStdout(), cmd.ErrOrStderr(), fl, rep); err != nil {
		return envErr(err)
	}
	return &exitError{code: signalCode(cmd), err: vmlab.ErrInterrupted}
}

// signalCode is the exit code for the signal that ended cmd's context.
func signalCode(cmd *cobra.Command) int {
	if code, ok := interrupted(cmd.Context()); ok {
		return code
	}
	return exitUsage
}
