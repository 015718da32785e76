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
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// BenchmarkOverhead measures the cost of tracing on connection setup through
// a NAT node. The tracer is loaded once; each iteration runs one block of
// connections with its programs detached and one with them attached
// (alternating which goes first), so loading, BTF parsing and the kernel's
// deferred freeing of programs never fall into one kind of block only. It
// reports both rates, the slowdown over all blocks, the median slowdown of
// the pairs, and the programs' own run time per connection from the kernel's
// BPF statistics, which no scheduling noise blurs.
//
//	go test -run '^$' -bench Overhead -benchtime 60x -count 5 ./trace/
func BenchmarkOverhead(b *testing.B) {
	needRoot(b)
	const block = 1000 // connections per block, all pods together
	f := newFixture(b, max(2, runtime.NumCPU()))
	f.serve(b, 80)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling BPF run statistics: %v", err)
	}
	defer stats.Close()
	tr, err := Start(context.Background(), Options{NetNS: f.nodeNS})
	if err != nil {
		b.Fatalf("Start: %v", err)
	}
	defer tr.Close()
	runStats := func() (d time.Duration, runs uint64) {
		for _, p := range tr.coll.Programs {
			if st, err := p.Stats(); err == nil {
				d += st.Runtime
				runs += st.RunCount
			}
		}
		return d, runs
	}
	var (
		attached, detached time.Duration
		bpfTime            time.Duration
		bpfRuns            uint64
		ratios             []float64 // per pair: attached time / detached time
	)
	for i := 0; b.Loop(); i++ {
		var pair [2]time.Duration // detached, attached
		for _, traced := range []bool{i%2 == 1, i%2 == 0} {
			if err := tr.setAttached(traced); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			t0, r0 := runStats()
			d, err := f.connectBlock(block, netip.AddrPortFrom(f.srvIP, 80))
			if err != nil {
				b.Fatal(err)
			}
			t1, r1 := runStats()
			if traced {
				pair[1] = d
				attached += d
				bpfTime += t1 - t0
				bpfRuns += r1 - r0
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

// setAttached attaches or detaches the loaded programs, keeping them loaded.
func (t *Tracer) setAttached(on bool) error {
	for _, l := range t.links {
		if err := l.Close(); err != nil {
			return err
		}
	}
	t.links = nil
	if !on {
		return nil
	}
	for _, name := range []string{"confirm_exit", "kfree_skb", "retransmit"} {
		if prog, ok := t.coll.Programs[name]; ok {
			l, err := link.AttachTracing(link.TracingOptions{Program: prog})
			if err != nil {
				return fmt.Errorf("attaching %s: %w", name, err)
			}
			t.links = append(t.links, l)
		}
	}
	return nil
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
			if err := pod.Enter(); err != nil { // never unlocked: the thread leaves with the pod ns
				ready.Done()
				errs <- err
				return
			}
			ready.Done()
			<-start
			sa := sockaddr(dst)
			for range per {
				fd, err := unix.Socket(family(dst), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
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
