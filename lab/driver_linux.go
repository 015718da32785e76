//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// driver sends the planned connection attempts of a topology from client
// threads pinned one per CPU, so SYNs really are processed in parallel: on a
// veth path the whole SYN, NAT and confirm run in the softirq of the CPU that
// called connect().
type driver struct {
	topo    *Topology
	dport   uint16
	cpus    []int
	timeout time.Duration // how long a round waits for late handshakes
	// short: every connection exchanges a byte each way and is closed
	// after the server's FIN (no reset on close), in the client thread.
	short bool
}

// listen starts an accept-and-close server on every server namespace. The
// listeners live until stop is called.
func (d *driver) listen(ctx context.Context) (stop func(), err error) {
	return d.serve([]uint16{d.dport}, func(c net.Conn) { c.Close() })
}

// serve listens on every port of ports in every server namespace and hands
// each accepted connection to handle, in the accepting goroutine. stop
// closes the listeners and waits for their goroutines.
func (d *driver) serve(ports []uint16, handle func(net.Conn)) (stop func(), err error) {
	var lns []net.Listener
	var wg sync.WaitGroup
	stop = func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	}
	for _, s := range d.topo.Servers {
		for _, port := range ports {
			var ln net.Listener
			err := s.NS.Do(func() (err error) {
				ln, err = listenBacklog(netip.AddrPortFrom(s.Addr, port), 4096)
				return err
			})
			if err != nil {
				stop()
				return nil, fmt.Errorf("listening in %s: %w", s.NS, err)
			}
			lns = append(lns, ln)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					handle(c)
				}
			}()
		}
	}
	return stop, nil
}

// listenBacklog listens with an explicit backlog: net.Listen takes the host
// namespace's somaxconn, and the lab must not depend on the host.
func listenBacklog(ap netip.AddrPort, backlog int) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen: %w", err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}

// openSockets creates, inside each pod's namespace, the non-blocking client
// sockets of ts (bound to their source port when one is given). A socket
// keeps the namespace it was created in, so any thread may connect it.
func (d *driver) openSockets(ts []target) ([]int, error) {
	return d.openSocketsOf(ts, unix.SOCK_STREAM)
}

// openSocketsOf is openSockets for sockets of type typ (unix.SOCK_STREAM or
// unix.SOCK_DGRAM). Datagram sockets are always bound (port 0: one the
// kernel picks now), so that sends from several threads share one port.
func (d *driver) openSocketsOf(ts []target, typ int) ([]int, error) {
	fds := make([]int, len(ts))
	for i := range fds {
		fds[i] = -1
	}
	byPod := make(map[int][]int)
	for i, t := range ts {
		byPod[t.pod] = append(byPod[t.pod], i)
	}
	closeAll := func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	for pod, idx := range byPod {
		p := d.topo.Pods[pod]
		err := p.NS.Do(func() error {
			for _, i := range idx {
				fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("socket: %w", err)
				}
				fds[i] = fd
				// Reset on close: no TIME_WAIT, so narrowed port ranges and
				// repeated source ports stay usable. Not for short
				// connections: the server closes first and keeps the
				// TIME_WAIT, as it does in the field.
				if !d.short {
					unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				}
				if port := ts[i].port; port != 0 || typ == unix.SOCK_DGRAM {
					// Not for UDP port 0: two UDP sockets with SO_REUSEADDR
					// may be given one port, and one steals the other's answers.
					if port != 0 {
						unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
					}
					if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port), Addr: p.Addr.As4()}); err != nil {
						return fmt.Errorf("binding %s:%d: %w", p.Addr, port, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("opening sockets in %s: %w", p.NS, err)
		}
	}
	return fds, nil
}

// spinBarrier lines up the client threads so that each burst's connect()s
// start within a microsecond or so on every CPU. The last thread to arrive
// asks stop() whether to go on, and every thread gets the same answer.
type spinBarrier struct {
	n     int32
	count atomic.Int32
	gen   atomic.Uint32
	halt  atomic.Bool
	stop  func() bool
}

func (b *spinBarrier) wait() (halt bool) {
	g := b.gen.Load()
	if b.count.Add(1) == b.n {
		b.count.Store(0)
		if b.stop != nil && b.stop() {
			b.halt.Store(true)
		}
		b.gen.Add(1)
		return b.halt.Load()
	}
	for i := 0; b.gen.Load() == g; i++ {
		if i > 1<<14 {
			runtime.Gosched()
		}
	}
	return b.halt.Load()
}

// round runs bursts (see planner.next) and waits for every handshake to end
// or time out. stop, polled between bursts, ends the round early; attempts of
// bursts never sent are not returned.
func (d *driver) round(ctx context.Context, bursts [][]target, stop func() bool) ([]attempt, error) {
	var flat []target
	for _, b := range bursts {
		flat = append(flat, b...)
	}
	fds, err := d.openSockets(flat)
	if err != nil {
		return nil, err
	}
	r := &driverRound{
		d: d, flat: flat, fds: fds, atts: make([]attempt, len(flat)), sent: make([]bool, len(flat)),
		dsts:    make([]unix.SockaddrInet4, len(d.topo.Servers)),
		shares:  shareBursts(bursts, len(d.cpus)),
		steady:  len(bursts) == 1 && len(flat) > 0 && flat[len(flat)-1].at > 0,
		pending: &waiters{files: map[*os.File]bool{}},
		start:   time.Now().Add(time.Millisecond), // Steady's clock; bursts ignore it
		errc:    make(chan error, 2*len(d.cpus)),
	}
	for i, t := range flat {
		r.atts[i] = attempt{pod: t.pod, server: t.server}
	}
	for k, s := range d.topo.Servers {
		r.dsts[k] = unix.SockaddrInet4{Port: int(d.dport), Addr: s.Addr.As4()}
	}
	defer context.AfterFunc(ctx, r.pending.cancel)()
	r.barrier = &spinBarrier{n: int32(len(d.cpus)), stop: func() bool { return ctx.Err() != nil || (stop != nil && stop()) }}
	var workers sync.WaitGroup
	for w := range d.cpus {
		workers.Add(1)
		go func() {
			defer workers.Done()
			r.worker(ctx, w)
		}()
	}
	workers.Wait()
	close(r.errc)
	r.pending.wg.Wait()
	for _, fd := range r.fds {
		if fd >= 0 {
			unix.Close(fd) // never sent: the round stopped early
		}
	}
	if err := <-r.errc; err != nil {
		return nil, err
	}
	out := r.atts[:0]
	for i := range r.atts {
		if r.sent[i] {
			out = append(out, r.atts[i])
		}
	}
	return out, nil
}

// driverRound is one round in flight: the planned attempts, their sockets
// and outcomes, and each client thread's share.
type driverRound struct {
	d       *driver
	flat    []target
	fds     []int
	atts    []attempt
	sent    []bool
	dsts    []unix.SockaddrInet4
	shares  [][][]int // worker -> burst -> indexes into flat
	steady  bool
	pending *waiters
	barrier *spinBarrier
	start   time.Time
	errc    chan error
}

// worker is client thread w: pinned to its CPU, it connects its share of
// each burst when the barrier releases it (or each steady attempt at its
// time).
func (r *driverRound) worker(ctx context.Context, w int) {
	d := r.d
	defer func() {
		if p := recover(); p != nil {
			r.errc <- fmt.Errorf("client thread on CPU %d: panic: %v", d.cpus[w], p)
		}
	}()
	// The thread is pinned to one CPU and never returned to the runtime's
	// pool: the goroutine ends still locked.
	if err := pinThread(d.cpus[w]); err != nil {
		r.errc <- err
	}
	for _, idx := range r.shares[w] {
		if !r.steady && r.barrier.wait() {
			return
		}
		for n, i := range idx {
			if r.steady && !waitUntil(ctx, r.start, r.flat[i].at) {
				return
			}
			if r.steady && n%64 == 63 && w == 0 && r.barrier.stop() {
				r.barrier.halt.Store(true)
			}
			if r.barrier.halt.Load() {
				return
			}
			r.sent[i] = true
			switch {
			case d.short && r.steady:
				if d.shortStart(r.fds[i], &r.dsts[r.flat[i].server], &r.atts[i]) {
					fd, a := r.fds[i], &r.atts[i]
					r.pending.wg.Add(1)
					go func() {
						defer r.pending.wg.Done()
						d.shortFinish(ctx, fd, a)
					}()
				}
			case d.short:
				d.shortConn(ctx, r.fds[i], &r.dsts[r.flat[i].server], &r.atts[i])
			default:
				d.connect(r.fds[i], &r.dsts[r.flat[i].server], &r.atts[i], r.pending)
			}
			r.fds[i] = -1
		}
	}
}

// pinThread locks the calling goroutine to its thread and the thread to
// cpu. The goroutine must end still locked, so the thread is never returned
// to the runtime's pool with its narrowed affinity.
func pinThread(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning client thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// waitUntil sleeps until start+at; false if ctx ended first.
func waitUntil(ctx context.Context, start time.Time, at time.Duration) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		d := time.Until(start.Add(at))
		if d <= 0 {
			return true
		}
		if d > 200*time.Microsecond {
			time.Sleep(d - 100*time.Microsecond)
		}
	}
}

// connect starts a handshake on fd towards dst and records it in a. On a veth
// path the handshake often completes inside connect() itself; otherwise a
// goroutine waits for it (a SYN dropped by the race comes back after 1 s).
// waiters tracks the handshakes still pending, so that a cancelled run can
// cut their wait short instead of sitting out the timeout.
type waiters struct {
	wg        sync.WaitGroup
	mu        sync.Mutex
	files     map[*os.File]bool
	cancelled bool
}

func (w *waiters) add(f *os.File, deadline time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancelled {
		deadline = time.Now()
	}
	f.SetDeadline(deadline)
	w.files[f] = true
}

// setDeadline moves the deadline of f (added before) unless the wait was
// cancelled, and reports whether it was not.
func (w *waiters) setDeadline(f *os.File, deadline time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.cancelled {
		f.SetDeadline(deadline)
	}
	return !w.cancelled
}

func (w *waiters) remove(f *os.File) {
	w.mu.Lock()
	delete(w.files, f)
	w.mu.Unlock()
}

// isCancelled reports whether cancel was called.
func (w *waiters) isCancelled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cancelled
}

func (w *waiters) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancelled = true
	for f := range w.files {
		f.SetDeadline(time.Now())
	}
}

func (d *driver) connect(fd int, dst *unix.SockaddrInet4, a *attempt, pending *waiters) {
	a.start = time.Now()
	err := unix.Connect(fd, dst)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		a.latency = time.Since(a.start)
		a.err = err
		unix.Close(fd)
		return
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		if in4, ok := sa.(*unix.SockaddrInet4); ok {
			a.localPort = uint16(in4.Port)
		}
	}
	if done, err := connected(fd); done {
		a.latency = time.Since(a.start)
		a.err = err
		finish(fd, a)
		return
	}
	pending.wg.Add(1)
	go func() {
		defer pending.wg.Done()
		f := os.NewFile(uintptr(fd), "client")
		defer f.Close()
		rc, err := f.SyscallConn()
		if err != nil {
			a.err = err
			return
		}
		pending.add(f, a.start.Add(d.timeout))
		defer pending.remove(f)
		var cerr error
		werr := rc.Write(func(fd uintptr) bool {
			var done bool
			done, cerr = connected(int(fd))
			return done
		})
		a.latency = time.Since(a.start)
		switch {
		case errors.Is(werr, os.ErrDeadlineExceeded):
			a.err = unix.ETIMEDOUT
		case werr != nil:
			a.err = werr
		default:
			a.err = cerr
		}
		rc.Control(func(fd uintptr) { a.retrans = retransmissions(int(fd)) })
	}()
}

// connected reports whether the handshake on fd is over, and how it ended.
func connected(fd int) (bool, error) {
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return true, err
	}
	if soerr != 0 {
		e := unix.Errno(soerr)
		if e == unix.EINPROGRESS || e == unix.EALREADY || e == unix.EINTR {
			return false, nil
		}
		return true, e
	}
	if _, err := unix.Getpeername(fd); err != nil {
		if errors.Is(err, unix.ENOTCONN) {
			return false, nil
		}
		return true, err
	}
	return true, nil
}

func finish(fd int, a *attempt) {
	a.retrans = retransmissions(fd)
	unix.Close(fd)
}

// retransmissions returns the socket's retransmitted segments; before any
// data is sent they are all SYNs.
func retransmissions(fd int) int {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return int(ti.Total_retrans)
}
