//go:build linux

package tsoffset

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/netns"
)

// Probe settings: SYNs from ProbePorts of 127.0.0.1 to 127.0.0.1:probeDport,
// probeGap apart, as the measurement did.
var ProbePorts = []uint16{40001, 40002, 40003, 40004}

// ProbeSuffix ends the name of every namespace Probe makes
// (snt-XXXXXX-tsprobe): what a check for a leftover probe looks for.
const ProbeSuffix = "-tsprobe"

const (
	probeDport = 8080
	probeGap   = 10 * time.Millisecond
)

// Probe measures the running kernel's timestamp offsets by behaviour: in a
// throwaway network namespace (named snt-XXXXXX-tsprobe, so that `snatrace
// lab cleanup` removes it after a SIGKILL) it connects from each of
// ProbePorts to a listener on loopback, records every SYN's TSval from a raw
// socket, and runs Detect. Nothing outside that namespace is touched; it is
// deleted on every path. It needs CAP_SYS_ADMIN and CAP_NET_ADMIN and takes
// about 50 ms.
func Probe(ctx context.Context) (Detection, error) {
	var b [3]byte
	rand.Read(b[:])
	ns, err := netns.Create("snt-" + hex.EncodeToString(b[:]) + ProbeSuffix)
	if err != nil {
		return Detection{Kind: Unknown}, fmt.Errorf("probing timestamp offsets: %w", err)
	}
	defer ns.Delete()
	h, err := ns.RouteHandle()
	if err != nil {
		return Detection{Kind: Unknown}, err
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	h.Close()
	if err != nil {
		return Detection{Kind: Unknown}, fmt.Errorf("bringing up lo in %s: %w", ns, err)
	}
	var samples []Sample
	err = ns.Do(func() (err error) {
		samples, err = probeSYNs(ctx)
		return err
	})
	if err != nil {
		return Detection{Kind: Unknown}, fmt.Errorf("probing timestamp offsets in %s: %w", ns, err)
	}
	return Detect(samples), nil
}

// probeSYNs connects from every probe port to a loopback listener in the
// calling thread's namespace and returns the SYNs a raw socket saw.
func probeSYNs(ctx context.Context) ([]Sample, error) {
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	ln, err := tcpSocket()
	if err != nil {
		return nil, err
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: probeDport, Addr: lo.As4()}); err != nil {
		return nil, fmt.Errorf("binding the listener: %w", err)
	}
	if err := unix.Listen(ln, 16); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(raw)
	unix.SetsockoptTimeval(raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
	sent := map[uint16]time.Time{}
	for _, port := range ProbePorts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		at, err := connectFrom(netip.AddrPortFrom(lo, port), netip.AddrPortFrom(lo, probeDport))
		if err != nil {
			return nil, err
		}
		sent[port] = at
		time.Sleep(probeGap)
	}
	return readSYNs(raw, sent, probeDport)
}

func tcpSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	return fd, nil
}

// connectFrom opens a connection from src to dst (loopback: the handshake
// ends inside connect) and resets it; it returns the time just before the
// SYN left.
func connectFrom(src, dst netip.AddrPort) (time.Time, error) {
	fd, err := tcpSocket()
	if err != nil {
		return time.Time{}, err
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(src.Port()), Addr: src.Addr().As4()}); err != nil {
		return time.Time{}, fmt.Errorf("binding %s: %w", src, err)
	}
	at := time.Now()
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		return time.Time{}, fmt.Errorf("connecting %s to %s: %w", src, dst, err)
	}
	return at, nil
}

// readSYNs reads the raw socket until it has seen the SYN of every port in
// sent towards dport, or it stays quiet for its receive timeout.
func readSYNs(raw int, sent map[uint16]time.Time, dport uint16) ([]Sample, error) {
	var out []Sample
	seen := map[uint16]bool{}
	buf := make([]byte, 1500)
	for len(seen) < len(sent) {
		n, _, err := unix.Recvfrom(raw, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading SYNs: %w", err)
		}
		seg, err := ParseSYN(buf[:n])
		at, ok := sent[seg.Src.Port()]
		if err != nil || !seg.SYN() || seg.Dst.Port() != dport || !ok || seen[seg.Src.Port()] {
			continue
		}
		seen[seg.Src.Port()] = true
		out = append(out, Sample{Src: seg.Src, Dst: seg.Dst, At: at, HasTS: seg.HasTS, TSval: seg.TSval})
	}
	if len(out) == 0 {
		return nil, errors.New("no SYN seen on the raw socket")
	}
	return out, nil
}
