//go:build linux

package nftnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumpBuffer is the receive buffer of a dump. The kernel sizes each part of
// a dump after the largest buffer the reader ever passed to recvmsg, capped
// at 32 KiB (netlink_recvmsg's max_recvmsg_len), and nf_tables resumes every
// part by walking its lists from the start. A reader with a page-sized
// buffer (mdlayher/netlink's Receive peeks with 4 KiB first) therefore gets
// about 15 rules a part and makes the kernel's walk quadratic in rules: 17k
// recvmsg calls of 0.6 ms each for 100,000 rules. 64 KiB lets the kernel
// fill 32 KiB parts and leaves room for any message it can send.
const dumpBuffer = 64 << 10

// DumpEach sends a dump request of msgType for family with attrs (a filter)
// and calls fn for every message of the answer, in order, as the parts
// arrive. m.Data is only valid during the call: fn must copy what it keeps.
// It reports whether the kernel flagged the dump interrupted
// (NLM_F_DUMP_INTR: a commit overlapped it). When fn fails, the rest of the
// dump is read and dropped, so that the Conn stays usable, and fn's error is
// returned.
func (c *Conn) DumpEach(msgType uint16, family byte, attrs []netlink.Attribute, fn func(m netlink.Message) error) (bool, error) {
	var data []byte
	if len(attrs) > 0 {
		var err error
		if data, err = netlink.MarshalAttributes(attrs); err != nil {
			return false, fmt.Errorf("encoding a dump filter: %w", err)
		}
	}
	req := Message(msgType, netlink.Dump, family, data)
	if c.test {
		intr, err := c.dumpTest(req, fn)
		return intr, c.spoil(err)
	}
	if err := c.deadline(); err != nil {
		return false, c.spoil(err)
	}
	sent, err := c.c.Send(req)
	if err != nil {
		return false, c.spoil(err)
	}
	rc, err := c.c.SyscallConn()
	if err != nil {
		return false, c.spoil(fmt.Errorf("reading a netlink dump: %w", err))
	}
	r := dumpReader{rc: rc, seq: sent.Header.Sequence, buf: make([]byte, dumpBuffer)}
	intr, err := r.run(fn)
	c.parts = r.parts
	return intr, c.spoil(err)
}

// dumpTest answers a dump from the test function, through netlink.Conn's
// own Execute.
func (c *Conn) dumpTest(req netlink.Message, fn func(netlink.Message) error) (bool, error) {
	msgs, err := c.c.Execute(req)
	if err != nil {
		return false, err
	}
	intr := false
	for _, m := range msgs {
		intr = intr || m.Header.Flags&netlink.DumpInterrupted != 0
		if err := fn(m); err != nil {
			return intr, err
		}
	}
	return intr, nil
}

// dumpReader reads the parts of one dump from a netlink socket.
type dumpReader struct {
	rc   syscall.RawConn
	seq  uint32
	buf  []byte
	intr bool
	// parts counts the parts (recvmsg calls) of the dump.
	parts int
	// failed is fn's first error; the dump is then drained.
	failed error
}

// run reads parts until NLMSG_DONE or an error.
func (r *dumpReader) run(fn func(netlink.Message) error) (bool, error) {
	for {
		n, err := r.recv()
		if err != nil {
			return r.intr, err
		}
		r.parts++
		done, err := r.part(r.buf[:n], fn)
		if err != nil {
			return r.intr, err
		}
		if done {
			return r.intr, r.failed
		}
	}
}

// recv reads one part, waiting (under the socket's deadline) for it.
func (r *dumpReader) recv() (int, error) {
	var (
		n, flags int
		rerr     error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		n, _, flags, _, rerr = unix.Recvmsg(int(fd), r.buf, nil, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
	})
	switch {
	case err != nil:
		return 0, &netlink.OpError{Op: "receive", Err: err}
	case rerr != nil:
		return 0, &netlink.OpError{Op: "receive", Err: rerr}
	case flags&unix.MSG_TRUNC != 0:
		return 0, fmt.Errorf("reading a netlink dump: a part larger than %d bytes was truncated", len(r.buf))
	}
	return n, nil
}

// part hands the messages of one part to fn; done is true at NLMSG_DONE.
func (r *dumpReader) part(b []byte, fn func(netlink.Message) error) (done bool, err error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		h := netlink.Header{
			Length:   binary.NativeEndian.Uint32(b[0:4]),
			Type:     netlink.HeaderType(binary.NativeEndian.Uint16(b[4:6])),
			Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:8])),
			Sequence: binary.NativeEndian.Uint32(b[8:12]),
			PID:      binary.NativeEndian.Uint32(b[12:16]),
		}
		if h.Length < unix.NLMSG_HDRLEN || int(h.Length) > len(b) {
			return false, errors.New("reading a netlink dump: malformed message header")
		}
		m := netlink.Message{Header: h, Data: b[unix.NLMSG_HDRLEN:h.Length]}
		b = b[min(nlmsgAlign(int(h.Length)), len(b)):]
		if h.Sequence != r.seq {
			continue // an answer to an earlier request, or a notification
		}
		r.intr = r.intr || h.Flags&netlink.DumpInterrupted != 0
		switch h.Type {
		case netlink.Done:
			return true, doneError(m.Data)
		case netlink.Error:
			if e := doneError(m.Data); e != nil {
				return true, e
			}
			continue
		}
		if r.failed == nil {
			r.failed = fn(m)
		}
	}
	return false, nil
}

// doneError is the error an NLMSG_DONE or NLMSG_ERROR message carries, if
// any, as netlink.Conn's own Receive returns it.
func doneError(data []byte) error {
	if len(data) < 4 {
		return nil
	}
	if code := int32(binary.NativeEndian.Uint32(data[:4])); code < 0 {
		return &netlink.OpError{Op: "receive", Err: unix.Errno(-code)}
	}
	return nil
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// Repeats reports whether two of xs have one key. A dump that gives a chain
// or a rule twice was torn by a transaction whose changes the kernel did
// not flag (Conn.Settle) and must be read again.
func Repeats[T any, K comparable](xs []T, key func(*T) K) bool {
	if len(xs) < 2 {
		return false
	}
	seen := make(map[K]bool, len(xs))
	for i := range xs {
		k := key(&xs[i])
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// TornRules reports whether a dump of one chain's rules, in the order read,
// was torn: a rule given twice, or rules skipped. The kernel gives each
// rule the handle of the active rule before it (NFTA_RULE_POSITION; none
// for the first), also across the parts of a dump, and an aborted
// transaction that unlinks rules a dump had counted (nft --check inserts
// and aborts) makes the next part skip as many, with no generation or
// NLM_F_DUMP_INTR to tell. A position of 0 after the first rule is not
// taken as a tear: a kernel that does not carry positions across parts
// gives none there.
func TornRules[T any](rules []T, handle, position func(*T) uint64) bool {
	if Repeats(rules, handle) {
		return true
	}
	var prev uint64
	for i := range rules {
		if p := position(&rules[i]); p != prev && (p != 0 || i == 0) {
			return true
		}
		prev = handle(&rules[i])
	}
	return false
}
