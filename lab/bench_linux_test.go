//go:build linux

package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snatrace/snatrace/ctstat"
	"github.com/snatrace/snatrace/lab/labnet"
	"github.com/snatrace/snatrace/natrule"
)

// BenchmarkTopology builds and removes a 64-pod lab topology, side by side
// with the iproute2 + nft script a person would type (shared/bench).
//
//	go test -run '^$' -bench Topology -benchtime 5x ./lab/
func BenchmarkTopology(b *testing.B) {
	needRoot(b)
	const pods = 64
	b.Run(fmt.Sprintf("snatrace/pods=%d", pods), func(b *testing.B) {
		for b.Loop() {
			topo, err := Build(context.Background(), TopologyConfig{Prefix: NewPrefix(), Pods: pods, Servers: 1})
			if err != nil {
				b.Fatal(err)
			}
			m, _ := natrule.ParseMode("masquerade")
			if err := natrule.Install(context.Background(), topo.Node, natrule.Nftables, []natrule.Rule{{Src: labnet.PodNet, OutIface: "up0", Proto: "tcp", Mode: m}}); err != nil {
				b.Fatal(err)
			}
			if err := topo.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	script, _ := filepath.Abs("../../shared/bench/iproute2-topology.sh")
	if _, err := os.Stat(script); err != nil {
		b.Logf("no baseline script at %s: skipping the iproute2 side", script)
		return
	}
	b.Run(fmt.Sprintf("iproute2/pods=%d", pods), func(b *testing.B) {
		for b.Loop() {
			prefix := fmt.Sprintf("snt-bl%d", os.Getpid())
			if out, err := exec.Command("bash", script, "up", fmt.Sprint(pods), prefix).CombinedOutput(); err != nil {
				exec.Command("bash", script, "down", prefix).Run()
				b.Fatalf("%v: %s", err, out)
			}
			if out, err := exec.Command("bash", script, "down", prefix).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}

// BenchmarkTimeToVerdict is `snatrace lab --nat masquerade --until 10`:
// setup, bursts until the node's conntrack counters confirm 10 clashes, the
// 1 s wait for the dropped SYNs' retransmissions, and teardown.
//
//	go test -run '^$' -bench TimeToVerdict -benchtime 5x ./lab/
func BenchmarkTimeToVerdict(b *testing.B) {
	needRoot(b)
	m, _ := natrule.ParseMode("masquerade")
	var clashes, conns uint64
	for b.Loop() {
		rep, err := Run(context.Background(), Config{Modes: []natrule.Mode{m}, Until: 10, Connections: MaxConnections})
		if err != nil {
			b.Fatal(err)
		}
		clashes += rep.Results[0].Conntrack.InsertFailed
		conns += uint64(rep.Results[0].Connections)
	}
	b.ReportMetric(float64(clashes)/float64(b.N), "clashes/op")
	b.ReportMetric(float64(conns)/float64(b.N), "connections/op")
}

// BenchmarkTickerReproducer is the reproducer people publish: two pods, one
// goroutine each, a dial every 100 ms through plain masquerade, for 30 s.
// It reports the clashes the node's conntrack counted (usually none).
//
//	go test -run '^$' -bench TickerReproducer -benchtime 1x -timeout 5m ./lab/
func BenchmarkTickerReproducer(b *testing.B) {
	needRoot(b)
	for b.Loop() {
		topo, err := Build(context.Background(), TopologyConfig{Prefix: NewPrefix(), Pods: 2, Servers: 1})
		if err != nil {
			b.Fatal(err)
		}
		m, _ := natrule.ParseMode("masquerade")
		if err := natrule.Install(context.Background(), topo.Node, natrule.Nftables, []natrule.Rule{{Src: labnet.PodNet, OutIface: "up0", Proto: "tcp", Mode: m}}); err != nil {
			b.Fatal(err)
		}
		d := &driver{topo: topo, dport: DefaultDport}
		stop, err := d.listen(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		before, err := ctstat.ReadProcIn(topo.Node)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		var dials [2]int
		deadline := time.Now().Add(30 * time.Second)
		for i, p := range topo.Pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.NS.Enter(); err != nil {
					b.Error(err)
					return
				}
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for now := range tick.C {
					if now.After(deadline) {
						return
					}
					c, err := net.DialTimeout("tcp4", net.JoinHostPort(topo.Servers[0].Addr.String(), "80"), 5*time.Second)
					if err == nil {
						c.Close()
					}
					dials[i]++
				}
			}()
		}
		wg.Wait()
		after, err := ctstat.ReadProcIn(topo.Node)
		if err != nil {
			b.Fatal(err)
		}
		stop()
		topo.Close()
		b.ReportMetric(float64(ctstatDelta(before, after)), "clashes/op")
		b.ReportMetric(float64(dials[0]+dials[1]), "dials/op")
	}
}
