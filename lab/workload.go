package lab

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/snatrace/snatrace/lab/labnet"
)

// Workload names, shared with the simulator (package labnet).
const (
	SamePort  = labnet.SamePort
	Ephemeral = labnet.Ephemeral
	Steady    = labnet.Steady
	Short     = labnet.Short
)

// Workloads lists the workload names.
var Workloads = labnet.Workloads

// WorkloadConfig shapes the traffic of one run.
type WorkloadConfig struct {
	Name string // SamePort, Ephemeral or Steady
	// Rate is the connection rate of Steady (connections per second, all pods together).
	Rate float64
	// Poisson makes Steady's arrivals a Poisson process instead of evenly spaced.
	Poisson bool
	// BasePort is the first source port SamePort uses; burst k uses
	// BasePort + k mod PortSpan, so no burst reuses a port still in conntrack.
	BasePort uint16
	PortSpan int
	// Dport is the server port.
	Dport uint16
}

func (w WorkloadConfig) validate() error {
	switch w.Name {
	case SamePort, Ephemeral, Pairs:
		if w.Rate != 0 {
			return fmt.Errorf("rate: only the steady workload takes a rate (workload %s sends bursts)", w.Name)
		}
		if w.Poisson {
			return fmt.Errorf("poisson: only the steady workload has Poisson arrivals (workload %s sends bursts)", w.Name)
		}
	case Steady:
		if w.Rate <= 0 || w.Rate > 1e6 || math.IsNaN(w.Rate) {
			return fmt.Errorf("rate: %v connections/s is out of range (0, 1000000]", w.Rate)
		}
	case Short:
		return w.validateShort()
	default:
		return fmt.Errorf("unknown workload %q: want %s", w.Name, strings.Join(Workloads, ", "))
	}
	return nil
}

// target is one planned connection attempt.
type target struct {
	pod    int
	server int
	port   uint16        // source port to bind; 0 lets the pod's kernel choose
	at     time.Duration // Steady: offset from the round's start
}

// planner hands out the connection attempts of successive rounds. It is
// deterministic for a seed, so two runs with one seed send the same traffic.
type planner struct {
	w       WorkloadConfig
	pods    int
	servers int
	burst   int // bursts planned so far (SamePort/Ephemeral)
	rng     *rand.Rand
}

func newPlanner(w WorkloadConfig, pods, servers int, seed uint64) *planner {
	if w.PortSpan <= 0 {
		w.PortSpan = 40000
	}
	if w.BasePort == 0 {
		w.BasePort = 10000
	}
	return &planner{w: w, pods: pods, servers: servers, rng: rand.New(rand.NewPCG(seed, 0x5a7))}
}

// next plans one round of about n attempts as bursts: each burst is a list
// of targets meant to leave at the same instant. Steady plans one "burst"
// whose targets carry their own start offsets.
func (p *planner) next(n int) [][]target {
	switch p.w.Name {
	case Steady, Short:
		// Short without a rate: every at is 0, each client thread connects
		// as fast as its connections end.
		ts := make([]target, 0, n)
		var at time.Duration
		var gap time.Duration
		if p.w.Rate > 0 {
			gap = time.Duration(float64(time.Second) / p.w.Rate)
		}
		for i := 0; i < n; i++ {
			ts = append(ts, target{pod: p.rng.IntN(p.pods), server: i % p.servers, at: at})
			if p.w.Poisson {
				at += time.Duration(p.rng.ExpFloat64() * float64(gap))
			} else {
				at += gap
			}
		}
		return [][]target{ts}
	default:
		var bursts [][]target
		for left := n; left > 0; left -= p.pods {
			b := make([]target, p.pods)
			var port uint16
			if p.w.Name == SamePort {
				port = p.w.BasePort + uint16(p.burst%p.w.PortSpan)
			}
			for i := range b {
				b[i] = target{pod: i, server: p.burst % p.servers, port: port}
			}
			p.burst++
			bursts = append(bursts, b)
		}
		return bursts
	}
}

// shareBursts splits every burst across n client threads, round-robin.
func shareBursts(bursts [][]target, n int) [][][]int {
	shares := make([][][]int, n)
	base := 0
	for _, b := range bursts {
		for w := range n {
			var mine []int
			for j := w; j < len(b); j += n {
				mine = append(mine, base+j)
			}
			shares[w] = append(shares[w], mine)
		}
		base += len(b)
	}
	return shares
}
