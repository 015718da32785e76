// Command snatrace finds, proves and fixes the Linux SNAT source-port race.
//
// Each job lives in its own package; this command only parses flags, calls the
// package and prints. See ARCHITECTURE.md in the design notes and README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/snatrace/snatrace/vmlab/guest"
	"github.com/spf13/cobra"
)

// Exit codes shared by every job.
const (
	exitOK       = 0 // ok, nothing found
	exitFindings = 1 // findings (audit), changes planned (fix), race reproduced when asked to fail on it
	exitUsage    = 2 // usage or environment error
)

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks err as a usage or environment error (exit 2).
func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// envErr wraps an environment error (missing privilege, binary, kernel feature): exit 2.
func envErr(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitUsage, err: err}
}

// silentExit ends the process with code after the command has printed its result.
func silentExit(code int) error { return &exitError{code: code} }

// commands registers the constructors of the job commands; each job's file adds
// itself from init, so adding a job never edits this file.
var commands []func() *cobra.Command

func register(f func() *cobra.Command) { commands = append(commands, f) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "snatrace",
		Short: "Find, prove and fix the Linux SNAT source-port race",
		Long: `snatrace finds, proves and fixes the Linux SNAT source-port race.

When containers connect out through a node that does MASQUERADE/SNAT, two SYNs
processed at the same moment on two CPUs can be given the same source port. The
second fails to enter the conntrack table (insert_failed, drop) and is silently
dropped; the client retransmits after 1 s, then 3 s, 7 s...

  snatrace lab        prove it on this kernel, side by side with its fixes (root)
  snatrace sim        predict it for other kernels, NAT modes and loads (no root)
  snatrace audit      find the rules on this host that can race, their owners,
                      and whether the race is happening now
  snatrace fix        make those rules fully-random, atomically, and keep them so
  snatrace exporter   Prometheus metrics for every node (DaemonSet in deploy/)
  snatrace trace      name the exact connections that lost a SYN (eBPF)
  snatrace top        which nodes of the cluster race, from Prometheus

Every job takes --json (one JSON document on stdout) and --help.

Exit codes: 0 ok, 1 findings or race reproduced when asked to fail, 2 usage or
environment error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// signalled is the cause of a context ended by a signal.
type signalled struct{ sig syscall.Signal }

func (s signalled) Error() string { return "interrupted by " + s.sig.String() }

// exitCode is the shell's code for a process ended by the signal: 130 for
// SIGINT, 143 for SIGTERM.
func (s signalled) exitCode() int { return 128 + int(s.sig) }

// interrupted returns the exit code for a job that a signal ended early, or
// false when ctx was not ended by one.
func interrupted(ctx context.Context) (int, bool) {
	var s signalled
	if errors.As(context.Cause(ctx), &s) {
		return s.exitCode(), true
	}
	return 0, false
}

// signalContext is cancelled, with a signalled cause, by SIGINT or SIGTERM.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		if sig, ok := <-sigc; ok {
			cancel(signalled{sig.(syscall.Signal)})
		}
	}()
	return ctx, func() { signal.Stop(sigc); close(sigc); cancel(nil) }
}

// run executes the command line args and returns the process exit code.
// In a VM lab guest, the same binary is the init and the modprobe.
func run(args []string) int {
	if guest.IsInit() {
		guest.Init()
	}
	if guest.IsModprobe() {
		return guest.Modprobe(args)
	}
	ctx, stop := signalContext()
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "snatrace: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "snatrace: %v\n", err)
	// cobra reports unknown commands and bad args as plain errors: usage.
	return exitUsage
}
