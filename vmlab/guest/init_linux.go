//go:build linux

package guest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/kmod"
)

// IsInit reports whether this process is a VM lab guest's init.
func IsInit() bool {
	if os.Getpid() != 1 {
		return false
	}
	_, err := os.Stat(ConfigPath)
	return err == nil
}

// IsModprobe reports whether this process was started as modprobe (the
// kernel's usermode helper, or iptables).
func IsModprobe() bool { return filepath.Base(os.Args[0]) == "modprobe" }

// Init is the guest's PID 1: it mounts the pseudo file systems, runs the
// configured command with its stdout captured, writes the Result to
// ResultPort and powers the machine off. It does not return.
func Init() {
	console := setup()
	code, out, report := run(console)
	fmt.Fprintf(console, "%s%d\n", MarkerExit, code)
	fmt.Fprintf(console, "%s %s\n", MarkerModules, strings.Join(loadedModules(), " "))
	if err := sendResult(Result{Exit: code, Stdout: out, Report: report}); err != nil {
		fmt.Fprintf(console, "snatrace-guest: %v\n", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// setup mounts /proc, /sys, /dev, /run and /tmp and makes the console the
// standard streams.
func setup() *os.File {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		unix.Mount(m.src, m.dst, m.fs, 0, "")
	}
	console, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		console = os.Stderr
	} else {
		for fd := 0; fd <= 2; fd++ {
			unix.Dup2(int(console.Fd()), fd)
		}
	}
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	// The kernel gives init 1,024 open files (hard 4,096); a distribution
	// raises it for its services, and so does this init: a lab round holds
	// one socket per connection.
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintf(console, "snatrace-guest: raising the open-files limit: %v\n", err)
	}
	return console
}

// run runs the configured command and returns its exit code, stdout and
// report file.
func run(console *os.File) (int, []byte, []byte) {
	var cfg Config
	b, err := os.ReadFile(ConfigPath)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		fmt.Fprintf(console, "snatrace-guest: reading %s: %v\n", ConfigPath, err)
		return 2, nil, nil
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	uptime, _ := os.ReadFile("/proc/uptime")
	up, _, _ := strings.Cut(string(uptime), " ")
	fmt.Fprintf(console, "%s%s (up %s s)\n", MarkerStart, unix.ByteSliceToString(uts.Release[:]), up)

	var out bytes.Buffer
	cmd := exec.Command("/init", cfg.Args...)
	cmd.Stdout = &out
	cmd.Stderr = console
	if !cfg.Terminal {
		pr, pw, err := os.Pipe()
		if err == nil {
			cmd.Stderr = pw
			go copyLines(console, pr)
			defer pr.Close()
			defer pw.Close()
		}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(console, "snatrace-guest: %v\n", err)
		return 2, nil, nil
	}
	go forwardInterrupt(console, cmd.Process)
	code := exitCode(cmd.Wait(), console)
	var report []byte
	if cfg.ReportPath != "" {
		report, _ = os.ReadFile(cfg.ReportPath)
	}
	return code, out.Bytes(), report
}

func exitCode(err error, console *os.File) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(console, "snatrace-guest: %v\n", err)
		return 2
	}
	return 0
}

// sendResult writes r to the result port in raw mode (no newline
// translation).
func sendResult(r Result) error {
	f, err := os.OpenFile(ResultPort, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", ResultPort, err)
	}
	defer f.Close()
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
		unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	if err := WriteResult(f, r); err != nil {
		return fmt.Errorf("writing the result: %w", err)
	}
	unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) // tcdrain
	return nil
}

// Modprobe loads modules the way modprobe(8) does, from the image's index:
// "modprobe [-q] [-b] [-v] [--] NAME [PARAM=VALUE...]", or with -a (--all)
// "modprobe -a NAME...". It returns the exit code (1 when a module cannot be
// found or loaded).
func Modprobe(args []string) int {
	req, err := ParseModprobe(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "modprobe: %v\n", err)
		return 1
	}
	code := 0
	for _, name := range req.Modules {
		if err := modprobe(name, req.Params); err != nil {
			report(name, err, req.Quiet)
			code = 1
		}
	}
	return code
}

// report says why a module did not load: on stderr unless quiet, and in the
// kernel log, since the kernel's own requests (-q) have no stderr. A name no
// module answers is the kernel trying one spelling after another, not a
// failure.
func report(name string, err error, quiet bool) {
	if !quiet {
		fmt.Fprintf(os.Stderr, "modprobe: %v\n", err)
	}
	if quiet && errors.Is(err, kmod.ErrUnknown) {
		return
	}
	if kmsg, kerr := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); kerr == nil {
		fmt.Fprintf(kmsg, "<4>snatrace modprobe %s: %v\n", name, err)
		kmsg.Close()
	}
}

func modprobe(name, params string) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	dir := filepath.Join(ModulesDir, unix.ByteSliceToString(uts.Release[:]))
	b, err := os.ReadFile(filepath.Join(dir, IndexName))
	if err != nil {
		return fmt.Errorf("reading the module index: %w", err)
	}
	var x kmod.Index
	if err := json.Unmarshal(b, &x); err != nil {
		return fmt.Errorf("reading the module index: %w", err)
	}
	return x.Load(dir, name, params)
}

// loadedModules returns the names in /proc/modules, sorted.
func loadedModules() []string {
	b, _ := os.ReadFile("/proc/modules")
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, _, ok := strings.Cut(line, " "); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// forwardInterrupt sends SIGINT to p when the host writes InterruptLine to
// the console.
func forwardInterrupt(console *os.File, p *os.Process) {
	if t, err := unix.IoctlGetTermios(int(console.Fd()), unix.TCGETS); err == nil {
		t.Lflag &^= unix.ECHO // the host's line is not for the output
		unix.IoctlSetTermios(int(console.Fd()), unix.TCSETS, t)
	}
	sc := bufio.NewScanner(console)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == InterruptLine {
			p.Signal(os.Interrupt)
		}
	}
}
