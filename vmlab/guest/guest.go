// Package guest is snatrace's side of a VM lab guest: the configuration the
// host writes into the initramfs, the init that runs the lab and hands its
// output back over the second serial port, and the modprobe that answers the
// kernel's module requests from the image's module index.
package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Paths inside the guest.
const (
	// ConfigPath is the guest's Config.
	ConfigPath = "/etc/snatrace/guest.json"
	// IndexName is the kmod.Index file in /lib/modules/RELEASE.
	IndexName = "snatrace-modules.json"
	// ModulesDir holds the modules, by release.
	ModulesDir = "/lib/modules"
	// ResultPort is the serial port the result is written to.
	ResultPort = "/dev/ttyS1"
)

// Console markers: lines the init prints for the host.
const (
	// MarkerStart begins the line printed when the command starts: the
	// kernel release and its uptime follow.
	MarkerStart = "snatrace-guest: running on "
	// MarkerExit begins the line printed when the command ended: its exit
	// code follows.
	MarkerExit = "snatrace-guest: exit "
	// MarkerModules begins the line listing the modules loaded when the
	// command ended (all loaded on demand: the init loads none).
	MarkerModules = "snatrace-guest: modules loaded:"
	// InterruptLine, written to the console by the host, interrupts the
	// guest's command (SIGINT): it reports what it completed and exits.
	InterruptLine = "snatrace-host: interrupt"
)

// Config is what the host asks the guest to do.
type Config struct {
	// Args is the snatrace command line to run (["lab", "--nat", ...]).
	Args []string `json:"args"`
	// Terminal gives the command the console itself, a terminal, so it
	// draws its progress bar; otherwise its stderr is copied line by line.
	Terminal bool `json:"terminal"`
	// ReportPath is a file the command writes (lab --report), returned
	// in Result.Report; "" for none.
	ReportPath string `json:"report_path,omitempty"`
}

// Result is what the guest hands back: the command's exit code, its
// standard output and the file at Config.ReportPath, if it wrote one.
type Result struct {
	Exit   int
	Stdout []byte
	Report []byte
}

const (
	resultHeader = "SNATRACE-RESULT v1"
	resultEnd    = "\nSNATRACE-END\n"
)

// WriteResult frames r for the result port.
func WriteResult(w io.Writer, r Result) error {
	_, err := fmt.Fprintf(w, "%s exit=%d stdout=%d report=%d\n%s%s%s", resultHeader, r.Exit, len(r.Stdout), len(r.Report), r.Stdout, r.Report, resultEnd)
	return err
}

// ErrNoResult is returned when the result port holds no complete result:
// the guest died (kernel panic, out of memory) or was stopped before.
var ErrNoResult = errors.New("the guest returned no result")

// maxResult bounds what ReadResult accepts of each part.
const maxResult = 1 << 30

// ReadResult parses what the result port received.
func ReadResult(b []byte) (Result, error) {
	i := bytes.Index(b, []byte(resultHeader+" "))
	if i < 0 {
		return Result{}, ErrNoResult
	}
	line, rest, ok := bytes.Cut(b[i+len(resultHeader)+1:], []byte("\n"))
	if !ok {
		return Result{}, fmt.Errorf("%w: truncated header", ErrNoResult)
	}
	var r Result
	var n, m int
	if _, err := fmt.Sscanf(string(line), "exit=%d stdout=%d report=%d", &r.Exit, &n, &m); err != nil || n < 0 || m < 0 || n > maxResult || m > maxResult {
		return Result{}, fmt.Errorf("%w: bad header %q", ErrNoResult, line)
	}
	if len(rest) < n+m+len(resultEnd) || string(rest[n+m:n+m+len(resultEnd)]) != resultEnd {
		return Result{}, fmt.Errorf("%w: output truncated (%d of %d bytes)", ErrNoResult, len(rest), n+m+len(resultEnd))
	}
	r.Stdout, r.Report = rest[:n], rest[n:n+m]
	if m == 0 {
		r.Report = nil
	}
	return r, nil
}

// ParseExit reads the exit code of a MarkerExit line.
func ParseExit(line string) (int, bool) {
	s, ok := strings.CutPrefix(strings.TrimSpace(line), MarkerExit)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// copyLines copies r to w line by line (so a line is never split between
// writers).
func copyLines(w io.Writer, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintln(w, sc.Text())
	}
}

// ModprobeRequest is a parsed modprobe command line.
type ModprobeRequest struct {
	Modules []string // to load, in order
	Params  string   // for the one module of a request without -a
	Quiet   bool
}

// ParseModprobe reads "modprobe [-q] [-b] [-v] [--] NAME [PARAM=VALUE...]"
// and "modprobe -a NAME...", the forms the kernel (request_module: "-q --
// NAME") and iptables use. Removing (-r) is refused.
func ParseModprobe(args []string) (ModprobeRequest, error) {
	var req ModprobeRequest
	all := false
	var words []string
	for i := 0; i < len(args) && len(words) == 0; i++ {
		switch a := args[i]; {
		case a == "--":
			words = args[i+1:]
		case !strings.HasPrefix(a, "-"):
			words = args[i:]
		case a == "-q" || a == "--quiet":
			req.Quiet = true
		case a == "-a" || a == "--all":
			all = true
		case a == "-r" || a == "--remove":
			return req, errors.New("removing modules is not supported in a snatrace guest")
		}
	}
	switch {
	case len(words) == 0:
		return req, errors.New("no module named")
	case all:
		req.Modules = words
	default:
		req.Modules, req.Params = words[:1], strings.Join(words[1:], " ")
	}
	return req, nil
}
