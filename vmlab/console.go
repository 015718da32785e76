package vmlab

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/snatrace/snatrace/vmlab/guest"
)

// console reads the guest's serial console: it keeps the boot log, notes
// when the guest's command starts and ends (guest's markers), and forwards
// what the command prints in between to out, with the serial line's CRLF
// turned back into LF and progress-bar updates (CR) passed on.
type console struct {
	out io.Writer

	mu      sync.Mutex
	started time.Time // when MarkerStart arrived
	guestUp string    // the guest kernel's uptime then, in seconds
	release string    // the guest kernel's release
	exit    int       // from MarkerExit
	exited  bool
	modules []string // from MarkerModules
	log     tail
	line    []byte
	cr      bool // the last byte was a CR, not yet known to be a CRLF
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range p {
		if c.cr {
			c.cr = false
			if b == '\n' {
				c.token('\n')
				continue
			}
			c.token('\r')
		}
		switch b {
		case '\r':
			c.cr = true
		case '\n':
			c.token('\n')
		default:
			c.line = append(c.line, b)
		}
	}
	return len(p), nil
}

// token handles one line or progress update, ended by end.
func (c *console) token(end byte) {
	text := string(c.line)
	c.line = c.line[:0]
	c.log.add(text + string(end))
	switch {
	case strings.HasPrefix(text, guest.MarkerStart):
		c.started = time.Now()
		rest := strings.TrimPrefix(text, guest.MarkerStart)
		c.release, rest, _ = strings.Cut(rest, " ")
		c.guestUp = strings.TrimSuffix(strings.TrimPrefix(rest, "(up "), " s)")
	case strings.HasPrefix(text, guest.MarkerModules):
		c.modules = strings.Fields(strings.TrimPrefix(text, guest.MarkerModules))
	case strings.HasPrefix(text, guest.MarkerExit):
		c.exit, c.exited = guest.ParseExit(text)
	case !c.started.IsZero() && !c.exited && c.out != nil:
		c.out.Write(append([]byte(text), end))
	}
}

// snapshot returns the boot log's tail.
func (c *console) snapshot() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// tail keeps the last 64 KiB written to it.
type tail struct{ b []byte }

const tailMax = 64 << 10

func (t *tail) add(s string) {
	t.b = append(t.b, s...)
	if over := len(t.b) - tailMax; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
}

func (t *tail) String() string { return string(t.b) }

// lastLines returns the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n\r"), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimSpace(string(bytes.TrimRight([]byte(lines[i]), "\r"))); l != "" {
			keep = append([]string{l}, keep...)
		}
	}
	return strings.Join(keep, "\n")
}
