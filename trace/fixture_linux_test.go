//go:build linux

package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"golang.org/x/sys/unix"
)

// fixture is a NAT node with racing pods, built for the privileged tests
// until package lab provides one:
//
//	pod0..podN (10.77.0.10+i/24) -- br0 (10.77.0.1) [node: masquerade on up0]
//	  up0 (198.18.<x>.1/24) -- eth0 (198.18.<x>.2/24) [server: listens on :80,7,9]
//
// The node also drops TCP SYNs to port 9 in forward and to port 7 in
// postrouting after source NAT: firewall drops that are not SNAT clashes.
type fixture struct {
	node   *netns.NS
	server *netns.NS
	pods   []*netns.NS
	podIPs []netip.Addr
	nodeIP netip.Addr // address of up0: the masquerade source
	srvIP  netip.Addr
	// The same for IPv6: the fixture is dual-stack.
	podIPs6 []netip.Addr
	nodeIP6 netip.Addr
	srvIP6  netip.Addr
	nodeNS  uint32 // inode of the node namespace
}

var fixtureSeq atomic.Uint32

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "creates network namespaces and loads eBPF programs")
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Skip(t, "needs %s: %v", bin, err)
		}
	}
}

// newFixture builds the topology; every namespace is deleted at cleanup.
func newFixture(t testing.TB, pods int) *fixture {
	t.Helper()
	x := int(fixtureSeq.Add(1)+uint32(os.Getpid()))%200 + 20
	f := &fixture{
		nodeIP:  netip.AddrFrom4([4]byte{198, 18, byte(x), 1}),
		srvIP:   netip.AddrFrom4([4]byte{198, 18, byte(x), 2}),
		nodeIP6: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(x), 14: 0, 15: 1}),
		srvIP6:  netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(x), 14: 0, 15: 2}),
	}
	f.node = netnstest.New(t, "tr-node")
	f.server = netnstest.New(t, "tr-srv")
	for i := range pods {
		f.pods = append(f.pods, netnstest.New(t, fmt.Sprintf("tr-p%d", i)))
		f.podIPs = append(f.podIPs, netip.AddrFrom4([4]byte{10, 77, 0, byte(10 + i)}))
		f.podIPs6 = append(f.podIPs6, netip.AddrFrom16([16]byte{0xfd, 0x77, 15: byte(0x10 + i)}))
	}
	for _, ns := range append([]*netns.NS{f.node, f.server}, f.pods...) {
		run(t, "ip", "-n", ns.Name(), "link", "set", "lo", "up")
	}
	n := f.node.Name()
	run(t, "ip", "-n", n, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", n, "addr", "add", "10.77.0.1/24", "dev", "br0")
	run(t, "ip", "-n", n, "addr", "add", "fd77::1/64", "dev", "br0", "nodad")
	run(t, "ip", "-n", n, "link", "set", "br0", "up")
	for i, pns := range f.pods {
		p := pns
		hv := fmt.Sprintf("vp%d", i)
		run(t, "ip", "-n", n, "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", p.Name())
		run(t, "ip", "-n", n, "link", "set", hv, "master", "br0", "up")
		run(t, "ip", "-n", p.Name(), "addr", "add", f.podIPs[i].String()+"/24", "dev", "eth0")
		run(t, "ip", "-n", p.Name(), "addr", "add", f.podIPs6[i].String()+"/64", "dev", "eth0", "nodad")
		run(t, "ip", "-n", p.Name(), "link", "set", "eth0", "up")
		run(t, "ip", "-n", p.Name(), "route", "add", "default", "via", "10.77.0.1")
		run(t, "ip", "-n", p.Name(), "-6", "route", "add", "default", "via", "fd77::1")
	}
	run(t, "ip", "-n", n, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", f.server.Name())
	run(t, "ip", "-n", n, "addr", "add", f.nodeIP.String()+"/24", "dev", "up0")
	run(t, "ip", "-n", n, "addr", "add", f.nodeIP6.String()+"/64", "dev", "up0", "nodad")
	run(t, "ip", "-n", n, "link", "set", "up0", "up")
	run(t, "ip", "-n", f.server.Name(), "addr", "add", f.srvIP.String()+"/24", "dev", "eth0")
	run(t, "ip", "-n", f.server.Name(), "addr", "add", f.srvIP6.String()+"/64", "dev", "eth0", "nodad")
	run(t, "ip", "-n", f.server.Name(), "link", "set", "eth0", "up")
	netnstest.Run(t, f.node, "", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	netnstest.Run(t, f.node, `
table inet snt_nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "up0" masquerade
	}
}
table inet snt_filter {
	chain fw_forward {
		type filter hook forward priority filter; policy accept;
		tcp dport 9 drop
	}
	chain fw_late {
		type filter hook postrouting priority 300; policy accept;
		tcp dport 7 drop
	}
}
`, "nft", "-f", "-")
	var err error
	if f.nodeNS, err = f.node.Inode(); err != nil {
		t.Fatal(err)
	}
	return f
}

// insertFailed sums insert_failed over CPUs in namespace ns (/proc, by
// column name).
func insertFailed(ns *netns.NS) (uint64, error) {
	s, err := ctstat.ReadProcIn(ns)
	return s.Total().InsertFailed, err
}

// server accepts and closes connections on ports in the server namespace
// until the test ends.
func (f *fixture) serve(t testing.TB, ports ...int) {
	t.Helper()
	var fds []int
	err := f.server.Do(func() error {
		for _, port := range ports {
			for _, a := range []netip.Addr{f.srvIP, f.srvIP6} {
				ap := netip.AddrPortFrom(a, uint16(port))
				fd, err := unix.Socket(family(ap), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				if err := unix.Bind(fd, sockaddr(ap)); err != nil {
					return fmt.Errorf("binding %v: %w", ap, err)
				}
				if err := unix.Listen(fd, 4096); err != nil {
					return err
				}
				fds = append(fds, fd)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	var wg sync.WaitGroup
	for _, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
				if err != nil {
					if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
						continue
					}
					return // listener shut down
				}
				unix.Close(nfd)
			}
		}()
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Shutdown(fd, unix.SHUT_RDWR)
			unix.Close(fd)
		}
		wg.Wait()
	})
}

// conn is the outcome of one connect from a pod.
type conn struct {
	Orig    Tuple
	Delayed bool // not established within the deadline: its SYN was lost
	Start   time.Time
	Took    time.Duration // until established, or until given up
}

// synRTO is the initial SYN retransmission timeout (TCP_TIMEOUT_INIT).
const synRTO = time.Second

// burstOptions describe a same-port burst workload.
type burstOptions struct {
	Bursts   int
	BasePort int // burst i uses source port BasePort+i in every pod
	DstPort  int
	// Deadline is when a connect not yet done is suspected delayed; it is
	// delayed if still not done just before the SYN would be retransmitted.
	Deadline time.Duration
	// IPv6 connects the pods' and server's IPv6 addresses.
	IPv6 bool
	// Keep is how many delayed connections are left to complete through a
	// SYN retransmission (in the background, up to 3 s) instead of closed.
	Keep int
}

// burst has every pod connect from the same source port to the server at
// the same moment, Bursts times. Client threads are locked inside the pods.
func (f *fixture) burst(t testing.TB, o burstOptions) []conn {
	t.Helper()
	dst := netip.AddrPortFrom(f.srvIP, uint16(o.DstPort))
	srcs := f.podIPs
	if o.IPv6 {
		dst = netip.AddrPortFrom(f.srvIP6, uint16(o.DstPort))
		srcs = f.podIPs6
	}
	var (
		arrived atomic.Int64 // spin barrier: pods that reached each burst
		mu      sync.Mutex
		conns   []conn
		kept    atomic.Int64
		bg      sync.WaitGroup
		errs    = make(chan error, len(f.pods))
		podDone sync.WaitGroup
		abort   atomic.Bool
	)
	n := int64(len(f.pods))
	for i, pod := range f.pods {
		podDone.Add(1)
		go func() {
			defer podDone.Done()
			if err := pod.Enter(); err != nil { // never unlocked: the thread leaves with the pod ns
				abort.Store(true)
				errs <- err
				return
			}
			for b := range o.Bursts {
				// The pods release each other, no coordinator: the last to
				// arrive starts them all at once. Bounded by a deadline.
				arrived.Add(1)
				until := time.Now().Add(10 * time.Second)
				for spins := 0; arrived.Load() < n*int64(b+1); spins++ {
					if abort.Load() {
						return
					}
					if spins%4096 == 0 && time.Now().After(until) {
						abort.Store(true)
						errs <- fmt.Errorf("burst %d: pods not ready", b)
						return
					}
				}
				c, fd, err := connectOnce(netip.AddrPortFrom(srcs[i], uint16(o.BasePort+b)), dst, o.Deadline)
				if err != nil {
					abort.Store(true)
					errs <- err
					return
				}
				record := func(c conn) {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				if !c.Delayed {
					closeRST(fd)
					record(c)
					continue
				}
				// Not established by the deadline: its SYN was lost, or the
				// machine is slow. Tell them apart off the burst's path: a
				// lost SYN is not retransmitted before the 1 s initial RTO.
				bg.Add(1)
				go func() {
					defer bg.Done()
					defer closeRST(fd)
					// Under load this goroutine may run after the
					// retransmission: the kernel's retransmit count decides.
					if waitConnected(fd, time.Until(c.Start.Add(synRTO-50*time.Millisecond))) && synRetransmits(fd) == 0 {
						c.Delayed = false
						c.Took = time.Since(c.Start)
						record(c)
						return
					}
					record(c)
					if kept.Add(1) <= int64(o.Keep) {
						waitConnected(fd, 3*time.Second)
					}
				}()
			}
		}()
	}
	podDone.Wait()
	bg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("burst: %v", err)
	default:
	}
	return conns
}

// connectOnce connects from src to dst without blocking past deadline.
func connectOnce(src, dst netip.AddrPort, deadline time.Duration) (conn, int, error) {
	c := conn{Orig: Tuple{Src: src, Dst: dst}, Start: time.Now()}
	fd, err := unix.Socket(family(src), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return c, -1, fmt.Errorf("socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sockaddr(src)); err != nil {
		unix.Close(fd)
		return c, -1, fmt.Errorf("binding %v: %w", src, err)
	}
	err = unix.Connect(fd, sockaddr(dst))
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return c, -1, fmt.Errorf("connecting %v -> %v: %w", src, dst, err)
	}
	c.Delayed = !waitConnected(fd, deadline) || synRetransmits(fd) != 0
	c.Took = time.Since(c.Start)
	return c, fd, nil
}

func family(ap netip.AddrPort) int {
	if ap.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// synRetransmits returns how many times the socket retransmitted (its SYN,
// for a connection just established); -1 if unknown.
func synRetransmits(fd int) int {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return -1
	}
	return int(info.Total_retrans)
}

// waitConnected polls fd for the end of a non-blocking connect.
func waitConnected(fd int, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		// A goroutine that runs late (a loaded machine) still looks once:
		// a socket connected meanwhile is connected, not delayed.
		left := max(time.Until(end), 0)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int((left+time.Millisecond-1)/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
		if n > 0 {
			soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			return err == nil && soErr == 0
		}
		if left == 0 {
			return false
		}
	}
}

// closeRST closes fd with a reset so no TIME_WAIT holds the port.
func closeRST(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}
