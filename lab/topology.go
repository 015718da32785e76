package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NamePrefix starts the name of every namespace a lab creates, so that
// `snatrace lab cleanup` can find what a killed run left behind.
const NamePrefix = "snt-"

// Limits on the topology, so a typo cannot build ten thousand namespaces.
const (
	MaxPods    = 1000
	MaxServers = 16
)

// TopologyConfig describes the namespaces of one lab run.
type TopologyConfig struct {
	// Prefix names every namespace ("snt-ab12cd-node", "snt-ab12cd-pod3"...);
	// NewPrefix makes a unique one.
	Prefix  string
	Pods    int // pod namespaces on the node's bridge, 1..MaxPods
	Servers int // server namespaces, each behind its own uplink, 1..MaxServers
	// PortRange, if set, is written to every pod's net.ipv4.ip_local_port_range.
	PortRange [2]uint16
}

// NewPrefix returns a fresh per-run prefix "snt-XXXXXX-".
func NewPrefix() string {
	var b [3]byte
	rand.Read(b[:])
	return NamePrefix + hex.EncodeToString(b[:]) + "-"
}

func (c TopologyConfig) validate() error {
	if c.Pods < 1 || c.Pods > MaxPods {
		return fmt.Errorf("pods: %d is out of range 1..%d", c.Pods, MaxPods)
	}
	if c.Servers < 1 || c.Servers > MaxServers {
		return fmt.Errorf("servers: %d is out of range 1..%d", c.Servers, MaxServers)
	}
	if c.PortRange != [2]uint16{} && (c.PortRange[0] < 1024 || c.PortRange[0] > c.PortRange[1]) {
		return fmt.Errorf("port range %d-%d: want 1024 <= first <= last", c.PortRange[0], c.PortRange[1])
	}
	if c.Prefix == "" {
		return fmt.Errorf("empty namespace prefix")
	}
	return nil
}
