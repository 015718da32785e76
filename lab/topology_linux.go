//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"

	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/netns"
)

// Pod is one client namespace.
type Pod struct {
	NS   *netns.NS
	Addr netip.Addr
}

// Server is one server namespace behind its own uplink from the node.
type Server struct {
	NS       *netns.NS
	Addr     netip.Addr // the server's address
	NodeAddr netip.Addr // the node's address on this uplink (what masquerade picks)
	Uplink   string     // the node's interface towards it
	Subnet   netip.Prefix
}

// Topology is a lab's namespaces: one node routing and NATing N pods towards
// one or more servers. Close removes all of it.
type Topology struct {
	Prefix  string
	Node    *netns.NS
	Pods    []Pod
	Servers []Server
}

// Build creates the namespaces, links, addresses and routes of cfg through
// netlink. The host namespace is never touched: every link is created from a
// handle inside the node namespace, with its peer placed straight into the pod
// or server namespace. On error everything already made is removed.
func Build(ctx context.Context, cfg TopologyConfig) (t *Topology, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t = &Topology{Prefix: cfg.Prefix}
	defer func() {
		if err != nil {
			t.Close()
			t = nil
		}
	}()
	if t.Node, err = netns.Create(cfg.Prefix + "node"); err != nil {
		return t, err
	}
	node, err := t.Node.RouteHandle()
	if err != nil {
		return t, err
	}
	defer node.Close()
	if err := setUp(node, "lo"); err != nil {
		return t, err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", Flags: net.FlagUp}}
	if err := node.LinkAdd(br); err != nil {
		return t, fmt.Errorf("adding bridge in %s: %w", t.Node, err)
	}
	if err := node.AddrAdd(br, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(labnet.BridgeIP, labnet.PodNet.Bits()))}); err != nil {
		return t, fmt.Errorf("addressing br0: %w", err)
	}
	if err := t.Node.Do(func() error {
		return writeSysctl("net/ipv4/ip_forward", "1")
	}); err != nil {
		return t, err
	}

	t.Servers = make([]Server, cfg.Servers)
	t.Pods = make([]Pod, cfg.Pods)
	g, gctx := errgroup.WithContext(ctx)
	// Namespace creation waits on the kernel (RCU), not the CPU: run a few
	// at once. Each goroutine only writes its own slot.
	g.SetLimit(8)
	for k := range cfg.Servers {
		g.Go(func() error { return t.addServer(gctx, node, k) })
	}
	for i := range cfg.Pods {
		g.Go(func() error { return t.addPod(gctx, node, br.Index, i, cfg.PortRange) })
	}
	if err := g.Wait(); err != nil {
		return t, err
	}
	return t, nil
}

func (t *Topology) addServer(ctx context.Context, node *netlink.Handle, k int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ns, err := netns.Create(t.Prefix + "srv" + strconv.Itoa(k))
	if err != nil {
		return err
	}
	subnet, nodeAddr, srvAddr := labnet.UplinkNet(k), labnet.NodeAddr(k), labnet.ServerAddr(k)
	t.Servers[k] = Server{NS: ns, Addr: srvAddr, NodeAddr: nodeAddr, Uplink: labnet.UplinkName(k), Subnet: subnet}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: labnet.UplinkName(k), Flags: net.FlagUp},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(ns.Fd()),
	}
	if err := node.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding uplink %s: %w", veth.Name, err)
	}
	if err := node.AddrAdd(veth, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(nodeAddr, 24))}); err != nil {
		return fmt.Errorf("addressing %s: %w", veth.Name, err)
	}
	h, err := ns.RouteHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := configureEnd(h, ns, netip.PrefixFrom(srvAddr, 24), netip.Addr{}); err != nil {
		return err
	}
	// A route back to the pods, so that NAT mode "none" works as a control.
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("finding eth0 in %s: %w", ns, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipnet(labnet.PodNet), Gw: nodeAddr.AsSlice()}); err != nil {
		return fmt.Errorf("adding route to pods in %s: %w", ns, err)
	}
	return nil
}

func (t *Topology) addPod(ctx context.Context, node *netlink.Handle, bridge, i int, portRange [2]uint16) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ns, err := netns.Create(t.Prefix + "pod" + strconv.Itoa(i))
	if err != nil {
		return err
	}
	t.Pods[i] = Pod{NS: ns, Addr: labnet.PodAddr(i)}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "v" + strconv.Itoa(i), MasterIndex: bridge, Flags: net.FlagUp},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(ns.Fd()),
	}
	if err := node.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding veth for pod %d: %w", i, err)
	}
	h, err := ns.RouteHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := configureEnd(h, ns, netip.PrefixFrom(labnet.PodAddr(i), labnet.PodNet.Bits()), labnet.BridgeIP); err != nil {
		return err
	}
	if portRange == [2]uint16{} {
		return nil
	}
	return ns.Do(func() error {
		return writeSysctl("net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", portRange[0], portRange[1]))
	})
}

// configureEnd brings up lo and eth0 in a pod or server namespace, addresses
// eth0 and, when gw is valid, adds the default route.
func configureEnd(h *netlink.Handle, ns *netns.NS, addr netip.Prefix, gw netip.Addr) error {
	if err := setUp(h, "lo"); err != nil {
		return err
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("finding eth0 in %s: %w", ns, err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipnet(addr)}); err != nil {
		return fmt.Errorf("addressing eth0 in %s: %w", ns, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bringing up eth0 in %s: %w", ns, err)
	}
	if gw.IsValid() {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("adding default route in %s: %w", ns, err)
		}
	}
	return nil
}

func setUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing up %s: %w", name, err)
	}
	return nil
}

// Close deletes every namespace of the topology; with them go their links,
// rules and sockets. It keeps going past errors and returns them all.
func (t *Topology) Close() error {
	if t == nil {
		return nil
	}
	var errs []error
	for _, p := range t.Pods {
		if p.NS != nil {
			errs = append(errs, p.NS.Delete())
		}
	}
	for _, s := range t.Servers {
		if s.NS != nil {
			errs = append(errs, s.NS.Delete())
		}
	}
	if t.Node != nil {
		errs = append(errs, t.Node.Delete())
	}
	return errors.Join(errs...)
}

// Cleanup deletes every namespace whose name starts with prefix (NamePrefix
// for all labs) and returns their names: the remedy for a SIGKILLed run.
func Cleanup(prefix string) ([]string, error) {
	if len(prefix) < len(NamePrefix) || prefix[:len(NamePrefix)] != NamePrefix {
		return nil, fmt.Errorf("cleanup prefix %q must start with %q", prefix, NamePrefix)
	}
	names, err := netns.List(prefix)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, netns.Delete(n))
	}
	return names, errors.Join(errs...)
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// writeSysctl writes a per-namespace sysctl of the calling thread's namespace.
// It must run inside netns.NS.Do.
func writeSysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0); err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	return nil
}
