package tool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/snatrace/snatrace/internal/hugepage"
	"github.com/snatrace/snatrace/netns"
)

// DefaultTimeout bounds each command Exec runs: a save of even a huge table
// takes seconds, and no job may hang on a stuck tool.
const DefaultTimeout = 60 * time.Second

// Exec runs tools with os/exec inside NS (nil: the caller's namespace). The
// child is forked from a thread inside NS, so it starts there: no nsenter.
type Exec struct {
	NS *netns.NS
	// Timeout bounds each command; 0 is DefaultTimeout.
	Timeout time.Duration
}

var _ Runner = Exec{}

// LookPath implements Runner.
func (e Exec) LookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", Missing(name)
	}
	return p, nil
}

// Run implements Runner.
func (e Exec) Run(ctx context.Context, c Cmd) ([]byte, error) {
	path, err := e.LookPath(c.Name)
	if err != nil {
		return nil, err
	}
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out blocks
	var stderr bytes.Buffer
	err = e.NS.Do(func() error {
		cmd := exec.CommandContext(ctx, path, c.Args...)
		if len(c.Env) > 0 {
			cmd.Env = append(os.Environ(), c.Env...)
		}
		cmd.Stdin = strings.NewReader(c.Stdin)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		return cmd.Run()
	})
	if err != nil {
		ee := &ExitError{Cmd: c.String(), Code: -1, Stderr: strings.TrimSpace(stderr.String()), Err: err}
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			ee.Code = xe.ExitCode()
		}
		if ctx.Err() != nil {
			ee.Err = errors.Join(err, ctx.Err())
		}
		return nil, ee
	}
	return out.bytes(), nil
}

// blocks collects a command's output in blocks that double in size and
// joins them once at the end: a save of 100,000 rules (15 MB) is copied
// once, where a growing bytes.Buffer copies and zeroes it again at every
// doubling. Large blocks are marked for transparent huge pages before
// they are written: faulting 15 MB in 4 KiB pages costs more in a virtual
// machine than copying it.
type blocks struct {
	full [][]byte
	cur  []byte
	n    int
}

func (b *blocks) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		if len(b.cur) == cap(b.cur) {
			if len(b.cur) > 0 {
				b.full = append(b.full, b.cur)
			}
			b.cur = make([]byte, 0, max(4<<10, 2*cap(b.cur)))
			hugepage.Slice(b.cur[:cap(b.cur)])
		}
		k := min(len(rest), cap(b.cur)-len(b.cur))
		b.cur = append(b.cur, rest[:k]...)
		rest = rest[k:]
	}
	b.n += len(p)
	return len(p), nil
}

// bytes returns everything written, in one slice.
func (b *blocks) bytes() []byte {
	if len(b.full) == 0 {
		return b.cur
	}
	out := make([]byte, 0, b.n)
	hugepage.Slice(out[:b.n])
	for _, c := range b.full {
		out = append(out, c...)
	}
	return append(out, b.cur...)
}
