package lab

import (
	"fmt"
	"strings"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
)

// Protocols of the lab's traffic (Config.Proto).
const (
	TCP = "tcp"
	UDP = "udp"
)

// Pairs is the UDP workload of glibc-like query pairs (labnet.Pairs).
const Pairs = labnet.Pairs

// UDP defaults.
const (
	// DefaultUDPTimeout is glibc's resolver timeout (options timeout:5).
	DefaultUDPTimeout = 5 * time.Second
	// DefaultUDPAttempts is glibc's attempts per server (options attempts:2).
	DefaultUDPAttempts = 2
	// DefaultUDPRoundSize is larger than TCP's: a round that lost a query
	// waits the client's timeout once for all of its queries, so larger
	// rounds spread that wait over more queries.
	DefaultUDPRoundSize = 4000
	// DefaultDNSPort is the port of the lab's resolver.
	DefaultDNSPort = 53
	// MaxUDPAttempts bounds the transmissions of one query.
	MaxUDPAttempts = 5
)

// UDPConfig shapes a UDP run (Config.Proto == UDP): resolver-like
// responders in the server namespaces answer every query, and the pods'
// clients wait for each answer like a stub resolver.
type UDPConfig struct {
	// Timeout is how long a client waits for an answer before it sends the
	// query again (glibc's options timeout:, 5 s). Waits run concurrently:
	// a round that lost queries takes about one Timeout longer, however
	// many it lost.
	Timeout time.Duration
	// Attempts is how many times a query is sent in all (glibc's options
	// attempts:, 2); a query unanswered after the last one has failed.
	Attempts int
	// Service sends every query to the node's cluster-DNS service address
	// (labnet.ServiceAddr:53), which a DNAT rule spreads over the servers
	// at random per new flow, as kube-proxy does for kube-dns.
	Service bool
}

// udpDefaults fills the zero UDP fields of c (Proto == UDP).
func (c *Config) udpDefaults() {
	if c.UDP.Timeout == 0 {
		c.UDP.Timeout = DefaultUDPTimeout
	}
	if c.UDP.Attempts == 0 {
		c.UDP.Attempts = DefaultUDPAttempts
	}
	if c.Workload.Dport == 0 {
		c.Workload.Dport = DefaultDNSPort
	}
	if c.RoundSize == 0 {
		c.RoundSize = DefaultUDPRoundSize
	}
}

// fitUDPRound caps the round size of a UDP run whose pods choose their
// ports from a narrowed --port-range: every query of a round holds its own
// bound socket until the round ends (pairs: one per pair), so a pod can
// take part in at most as many queries per round as it has ports.
func (c *Config) fitUDPRound() {
	if c.PortRange == [2]uint16{} || c.Workload.Name == SamePort {
		return
	}
	perSocket := 1
	if c.Workload.Name == Pairs {
		perSocket = 2
	}
	c.RoundSize = min(c.RoundSize, c.Pods*perSocket*(int(c.PortRange[1])-int(c.PortRange[0])+1))
}

// burstSize is the number of connections or queries of one burst.
func (c Config) burstSize() int {
	if c.Workload.Name == Pairs {
		return 2 * c.Pods
	}
	return c.Pods
}

// validateProto checks the settings that depend on the protocol, naming
// the CLI flag of each.
func (c Config) validateProto() error {
	switch c.Proto {
	case TCP:
		if c.Workload.Name == Pairs {
			return fmt.Errorf("workload: %s is a UDP workload (use --proto udp)", Pairs)
		}
		if c.UDP != (UDPConfig{}) {
			return fmt.Errorf("udp-timeout, udp-attempts and service: only with --proto udp")
		}
		return nil
	case UDP:
	default:
		return fmt.Errorf("proto: %q is not tcp or udp", c.Proto)
	}
	switch c.Workload.Name {
	case SamePort, Ephemeral, Pairs:
	default:
		return fmt.Errorf("workload: %s is not a UDP workload: want %s", c.Workload.Name, strings.Join(labnet.UDPWorkloads, ", "))
	}
	if c.UDP.Timeout <= 0 || c.UDP.Timeout > time.Minute {
		return fmt.Errorf("udp-timeout: %v is out of range (0, 1m]", c.UDP.Timeout)
	}
	if c.UDP.Attempts < 1 || c.UDP.Attempts > MaxUDPAttempts {
		return fmt.Errorf("udp-attempts: %d is out of range 1..%d", c.UDP.Attempts, MaxUDPAttempts)
	}
	return nil
}

// DNS query types the clients ask for.
const (
	qtypeA    = 1
	qtypeAAAA = 28
)

// query is one planned query: its client socket, where it goes and what it
// asks.
type query struct {
	target        // pod, server, source port (0: the kernel's choice)
	sock   int    // the socket it is sent from, an index into its round's sockets
	qtype  uint16 // qtypeA or qtypeAAAA
	id     uint16 // DNS message id; its low bits carry the attempt
}

// nextUDP plans one round of about n queries as bursts, each meant to
// leave at the same instant. same-port and ephemeral are the TCP bursts
// with one socket per query; pairs gives every pod one socket per burst
// that sends an A and an AAAA query, consecutive in the burst so that
// shareBursts puts them on two CPUs.
func (p *planner) nextUDP(n int) [][]query {
	var bursts [][]query
	sock := 0
	if p.w.Name != Pairs {
		for _, b := range p.next(n) {
			qs := make([]query, len(b))
			for i, t := range b {
				qs[i] = query{target: t, sock: sock, qtype: qtypeA, id: p.queryID()}
				sock++
			}
			bursts = append(bursts, qs)
		}
		return bursts
	}
	for left := n; left > 0; left -= 2 * p.pods {
		qs := make([]query, 0, 2*p.pods)
		for pod := range p.pods {
			t := target{pod: pod, server: p.burst % p.servers}
			qs = append(qs, query{target: t, sock: sock, qtype: qtypeA, id: p.queryID()},
				query{target: t, sock: sock, qtype: qtypeAAAA, id: p.queryID()})
			sock++
		}
		p.burst++
		bursts = append(bursts, qs)
	}
	return bursts
}

// queryID draws a message id whose low attemptBits are free for the
// attempt number.
func (p *planner) queryID() uint16 { return uint16(p.rng.Uint32()) &^ (1<<attemptBits - 1) }

// attemptBits of a message id carry the attempt (0-based), so that a late
// answer to an earlier attempt is told apart from the answer to a retry.
const attemptBits = 3

// dnsName is the question every query asks: "q.lab.", encoded.
var dnsName = []byte{1, 'q', 3, 'l', 'a', 'b', 0}

// dnsHeaderLen is the length of a DNS message header.
const dnsHeaderLen = 12

// appendQuery appends a DNS query message (RFC 1035 §4.1) for dnsName with
// id and qtype to b: a real stub resolver's question, so that a capture of
// the lab's traffic reads as DNS.
func appendQuery(b []byte, id, qtype uint16) []byte {
	b = append(b, byte(id>>8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, QDCOUNT 1
	b = append(b, dnsName...)
	return append(b, byte(qtype>>8), byte(qtype), 0, 1) // class IN
}

// ParseDNSQuestion reads the header and first question of a DNS message:
// its id, whether it is a response (QR), and the question's type. It
// rejects anything shorter than a header and one question, a message
// without a question, and a malformed or compressed name.
func ParseDNSQuestion(b []byte) (id uint16, response bool, qtype uint16, err error) {
	if len(b) < dnsHeaderLen {
		return 0, false, 0, fmt.Errorf("dns message of %d bytes: shorter than its header", len(b))
	}
	id = uint16(b[0])<<8 | uint16(b[1])
	response = b[2]&0x80 != 0
	if qd := uint16(b[4])<<8 | uint16(b[5]); qd == 0 {
		return 0, false, 0, fmt.Errorf("dns message %#04x: no question", id)
	}
	i := dnsHeaderLen
	for labels := 0; ; labels++ {
		if i >= len(b) || labels > 127 {
			return 0, false, 0, fmt.Errorf("dns message %#04x: question name runs past the message", id)
		}
		l := int(b[i])
		if l&0xc0 != 0 {
			return 0, false, 0, fmt.Errorf("dns message %#04x: compressed or extended label in the question", id)
		}
		i += 1 + l
		if l == 0 {
			break
		}
	}
	if i+4 > len(b) {
		return 0, false, 0, fmt.Errorf("dns message %#04x: question type and class cut short", id)
	}
	return id, response, uint16(b[i])<<8 | uint16(b[i+1]), nil
}

// answerQuery turns a query message into its answer in place: the QR and
// RA bits set, the question kept, no records (an empty NOERROR answer is
// all a stub resolver's wait needs). ok is false for a message that is not
// a query.
func answerQuery(b []byte) (ok bool) {
	if _, resp, _, err := ParseDNSQuestion(b); err != nil || resp {
		return false
	}
	b[2] |= 0x80 // QR
	b[3] |= 0x80 // RA
	return true
}
