//go:build linux

package trace

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkOverhead measures the cost of tracing on connection setup through
// a NAT node: each iteration runs one block of connections with the tracer
// detached and one with it attached, alternating which goes first, and
// reports both rates, the slowdown over all blocks and the median slowdown of
// the pairs. Attaching and detaching are not timed,
// and the garbage collector runs before every block. The programs' own run
// statistics give the kernel-side cost per connection, which no scheduling
// noise blurs.
//
//	go test -run '^$' -bench Overhead -benchtime 20x ./trace/
func BenchmarkOverhead(b *testing.B) {
	needRoot(b)
	const block = 1000 // connections per block, all pods together
	f := newFixture(b, max(2, runtime.NumCPU()))
	f.serve(b, 80)
	// Kernel-side cost, from the programs' own run statistics.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling BPF run statistics: %v", err)
	}
	defer stats.Close()
	var (
		attached, detached time.Duration
		bpfTime            time.Duration
		bpfRuns            uint64
		ratios             []float64 // per pair: attached time / detached time
	)
	for i := 0; b.Loop(); i++ {
		var pair [2]time.Duration // detached, attached
		for _, traced := range []bool{i%2 == 1, i%2 == 0} {
			var tr *Tracer
			if traced {
				var err error
				if tr, err = Start(context.Background(), Options{NetNS: f.nodeNS}); err != nil {
					b.Fatalf("Start: %v", err)
				}
			}
			// Start allocates (kernel BTF) and Close leaves the kernel
			// freeing programs in RCU callbacks: collect and settle so
			// neither lands in one kind of block only.
			runtime.GC()
			time.Sleep(300 * time.Millisecond)
			d, err := f.connectBlock(block, netip.AddrPortFrom(f.srvIP, 80))
			if err != nil {
				b.Fatal(err)
			}
			if traced {
				pair[1] = d
				attached += d
				for _, p := range tr.coll.Programs {
					if st, err := p.Stats(); err == nil {
						bpfTime += st.Runtime
						bpfRuns += st.RunCount
					}
				}
				tr.Close()
			} else {
				pair[0] = d
				detached += d
			}
		}
		ratios = append(ratios, pair[1].Seconds()/pair[0].Seconds())
	}
	n := float64(b.N * block)
	det, att := n/detached.Seconds(), n/attached.Seconds()
	b.ReportMetric(det, "detached_conn/s")
	b.ReportMetric(att, "attached_conn/s")
	b.ReportMetric(100*(det-att)/det, "slowdown_%")
	// Neighbouring blocks share the machine's load: the median of the
	// per-pair ratios resists a slow moment that hits one block only.
	slices.Sort(ratios)
	b.ReportMetric(100*(ratios[len(ratios)/2]-1), "median_pair_slowdown_%")
	b.ReportMetric(float64(bpfTime.Nanoseconds())/n, "bpf_ns/conn")
	b.ReportMetric(float64(bpfRuns)/n, "bpf_runs/conn")
}

// connectBlock opens and resets n connections to dst, spread over the pods,
// each pod on its own thread, and returns the wall time they took.
func (f *fixture) connectBlock(n int, dst netip.AddrPort) (time.Duration, error) {
	per := n / len(f.pods)
	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, len(f.pods))
	)
	ready.Add(len(f.pods))
	for _, pod := range f.pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread leaves with the pod ns
			if err := enterNS(pod); err != nil {
				ready.Done()
				errs <- err
				return
			}
			ready.Done()
			<-start
			sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
			for range per {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					errs <- err
					return
				}
				if err := unix.Connect(fd, sa); err != nil {
					unix.Close(fd)
					errs <- fmt.Errorf("connecting to %v: %w", dst, err)
					return
				}
				closeRST(fd)
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	wg.Wait()
	d := time.Since(t0)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return d, nil
}
