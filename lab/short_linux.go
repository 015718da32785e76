//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/tsoffset"
)

// maxTimeWait is the servers' net.ipv4.tcp_max_tw_buckets in a short run.
const maxTimeWait = 1 << 18

// shortPort is the server port of variant i (a mode through a backend) in
// a short run: each variant has its own, so its TIME_WAIT sockets and
// conntrack entries never share a tuple with another's.
func (c Config) shortPort(i int) uint16 { return c.Workload.Dport + uint16(i) }

// shortPods moves a round's attempts onto the pods of the variant in
// flight (Session.podBase): none for other workloads.
func (s *Session) shortPods(bursts [][]target) [][]target {
	if s.podBase == 0 {
		return bursts
	}
	for _, b := range bursts {
		for i := range b {
			b[i].pod += s.podBase
		}
	}
	return bursts
}

// listenShort starts, in every server namespace, a listener on the port of
// every variant that reads the client's byte, answers one byte and closes
// first: the server keeps the TIME_WAIT, as HTTP/1.0 servers do.
func (s *Session) listenShort(ctx context.Context) (stop func(), err error) {
	for _, srv := range s.Topo.Servers {
		// A new namespace may keep only half its established hash in
		// TIME_WAIT (4,096 in a 1 GiB VM): beyond that a closed connection
		// keeps none (TCPTimeWaitOverflow). A server keeps them all.
		if err := srv.NS.Do(func() error { return writeSysctl("net/ipv4/tcp_max_tw_buckets", strconv.Itoa(maxTimeWait)) }); err != nil {
			return nil, err
		}
	}
	n := max(1, len(s.cfg.Modes)*len(s.cfg.Backends))
	ports := make([]uint16, n)
	for i := range ports {
		ports[i] = s.cfg.shortPort(i)
	}
	var conns sync.WaitGroup
	stopListen, err := s.d.serve(ports, func(c net.Conn) {
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(s.cfg.Timeout))
			var b [1]byte
			if _, err := c.Read(b[:]); err == nil {
				c.Write(b[:])
			}
		}()
	})
	if err != nil {
		return nil, err
	}
	return func() {
		stopListen()
		conns.Wait()
	}, nil
}

// shortConn runs one short connection on fd from the calling client thread:
// shortStart, then shortFinish. A paced run (Rate) hands shortFinish to a
// goroutine instead (driverRound.worker), so that a delayed connection
// does not hold up the ones planned after it.
func (d *driver) shortConn(ctx context.Context, fd int, dst *unix.SockaddrInet4, a *attempt) {
	if d.shortStart(fd, dst, a) {
		d.shortFinish(ctx, fd, a)
	}
}

// shortStart sends the SYN of a short connection on fd from the calling
// (pinned) thread; false when connect failed at once (fd is then closed).
func (d *driver) shortStart(fd int, dst *unix.SockaddrInet4, a *attempt) bool {
	a.start = time.Now()
	err := unix.Connect(fd, dst)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		a.latency, a.err = time.Since(a.start), err
		unix.Close(fd)
		return false
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		if in4, ok := sa.(*unix.SockaddrInet4); ok {
			a.localPort = uint16(in4.Port)
		}
	}
	return true
}

// shortFinish waits for the handshake of a started short connection (its
// latency and SYN retransmissions are the attempt's), sends one byte,
// reads the answer and the server's FIN, and closes fd. Everything is
// bounded by the driver's timeout from the connect; a cancelled ctx cuts
// it short.
func (d *driver) shortFinish(ctx context.Context, fd int, a *attempt) {
	defer unix.Close(fd)
	deadline := a.start.Add(d.timeout)
	err := pollUntil(ctx, fd, unix.POLLOUT, deadline)
	a.latency = time.Since(a.start)
	if err == nil {
		_, err = connected(fd)
	}
	a.retrans = retransmissions(fd) // before any data: SYNs only
	if err != nil {
		a.err = err
		return
	}
	if err := exchange(ctx, fd, deadline); err != nil {
		a.err = fmt.Errorf("%w: %w", errAfterHandshake, err)
	}
}

// exchange sends one byte on the connected fd and reads until the server's
// FIN.
func exchange(ctx context.Context, fd int, deadline time.Time) error {
	if _, err := unix.Write(fd, []byte{'q'}); err != nil {
		return fmt.Errorf("sending the request: %w", err)
	}
	var b [16]byte
	for {
		n, err := unix.Read(fd, b[:])
		switch {
		case n == 0 && err == nil:
			return nil // the server's FIN
		case errors.Is(err, unix.EAGAIN):
			if err := pollUntil(ctx, fd, unix.POLLIN, deadline); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("reading the answer: %w", err)
		}
	}
}

// pollUntil waits until fd is ready for events (or has an error or hang-up
// pending), the deadline passes (ETIMEDOUT) or ctx ends.
func pollUntil(ctx context.Context, fd int, events int16, deadline time.Time) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Past the deadline it still looks once: a caller that ran late
		// must not call a ready socket timed out.
		left := max(time.Until(deadline), 0)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int((min(left, 100*time.Millisecond)+time.Millisecond-1)/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil
		}
		if left == 0 {
			return unix.ETIMEDOUT
		}
	}
}

// probeTSOffsets probes the kernel's timestamp offsets for the report; a
// probe that fails says why in the detection, and the run goes on.
func probeTSOffsets(ctx context.Context) *tsoffset.Detection {
	d, err := tsoffset.Probe(ctx)
	if err != nil {
		d = tsoffset.Detection{Kind: tsoffset.Unknown, Reason: err.Error()}
	}
	return &d
}
