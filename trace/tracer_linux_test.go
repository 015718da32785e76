//go:build linux

package trace

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/snatrace/snatrace/internal/testenv"
	"golang.org/x/sys/unix"
)

// collect gathers the events of tr that keep accepts until it has want of
// them (then waits a little longer for any extra) or wait ends.
func collect(tr *Tracer, keep func(Event) bool, want int, wait time.Duration) []Event {
	var got []Event
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if want >= 0 && len(got) >= want {
			want = -1
			timer.Reset(300 * time.Millisecond)
		}
		select {
		case ev, ok := <-tr.Events():
			if !ok {
				return got
			}
			if keep(ev) {
				got = append(got, ev)
			}
		case <-timer.C:
			return got
		}
	}
}

// TestSamePortBurst runs a same-port burst through plain masquerade and
// checks every SNAT clash the kernel counted is attributed, to the right
// connection, while firewall drops in the same run are not.
func TestSamePortBurst(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { testSamePortBurst(t, false) })
	t.Run("ipv6", func(t *testing.T) { testSamePortBurst(t, true) })
}

func testSamePortBurst(t *testing.T, ipv6 bool) {
	needRoot(t)
	f := newFixture(t, max(2, runtime.NumCPU()))
	nodeIP := f.nodeIP
	if ipv6 {
		nodeIP = f.nodeIP6
	}
	f.serve(t, 80, 7, 9)
	tr, err := Start(context.Background(), Options{NetNS: f.nodeNS})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer tr.Close()
	t.Logf("mode %s", tr.Mode())
	// A second tracer watching the server's namespace, where nothing drops.
	srvIno, err := f.server.Inode()
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := Start(context.Background(), Options{NetNS: srvIno})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer elsewhere.Close()

	before, err := insertFailed(f.node)
	if err != nil {
		t.Fatalf("reading insert_failed: %v", err)
	}
	// Rounds until the kernel counted a few clashes: how often the pods'
	// SYNs meet depends on what else the CPUs are doing. Bounded in rounds.
	var conns []conn
	for round := 0; round < 8; round++ {
		conns = append(conns, f.burst(t, burstOptions{
			Bursts: 250, BasePort: 20000 + 250*round, DstPort: 80,
			Deadline: 150 * time.Millisecond, Keep: 2, IPv6: ipv6,
		})...)
		if n, err := insertFailed(f.node); err == nil && n >= before+3 {
			break
		}
	}
	// Firewall drops in the same run: port 9 in forward, before NAT; port 7
	// in postrouting after source NAT, where the conntrack looks like a loser's.
	var fw []conn
	for i, port := range []int{9, 7} {
		fw = append(fw, f.burst(t, burstOptions{Bursts: 3, BasePort: 30000 + 10*i, DstPort: port, Deadline: 100 * time.Millisecond, IPv6: ipv6})...)
	}
	after, err := insertFailed(f.node)
	if err != nil {
		t.Fatalf("reading insert_failed: %v", err)
	}
	delta := int(after - before)
	if delta == 0 {
		testenv.Skip(t, "no SNAT clash in %d connections on %d CPUs: nothing to attribute", len(conns), runtime.NumCPU())
	}

	events := collect(tr, func(Event) bool { return true }, delta+len(fw), 10*time.Second)
	delayed := map[Tuple]conn{}
	for _, c := range conns {
		if c.Delayed {
			delayed[c.Orig] = c
		}
	}
	var clashes, others []Event
	for _, ev := range events {
		if ev.Kind == KindSNATClash {
			clashes = append(clashes, ev)
		} else {
			others = append(others, ev)
		}
	}
	if len(clashes) != delta {
		t.Errorf("attributed %d SNAT clashes, kernel insert_failed delta is %d", len(clashes), delta)
	}
	var late []Delayed
	for _, c := range delayed {
		late = append(late, Delayed{Orig: c.Orig, Start: c.Start})
	}
	m := Match(late, clashes, 2*time.Second, 50*time.Millisecond)
	if m.Attributed != len(clashes) || len(m.Extra) != 0 {
		t.Errorf("%d of %d clashes match a delayed connection", m.Attributed, len(clashes))
		for _, ev := range m.Extra {
			for _, c := range conns {
				if c.Orig == ev.Orig {
					t.Errorf("unmatched drop %v at %v: its connection started %v, delayed %v, took %v", ev.Orig, ev.Time, c.Start, c.Delayed, c.Took)
				}
			}
		}
	}
	for _, d := range m.Unmatched {
		t.Errorf("delayed connection %v has no attributed drop", d.Orig)
	}
	for _, ev := range clashes {
		if ev.NetNS != f.nodeNS {
			t.Errorf("clash %v in netns %d, want node %d", ev.Orig, ev.NetNS, f.nodeNS)
		}
		if ev.Evidence != EvidenceConfirmDrop && ev.Evidence != EvidenceReplyTaken {
			t.Errorf("clash %v: evidence %q", ev.Orig, ev.Evidence)
		}
		if ev.NAT.Src.Addr() != nodeIP || ev.NAT.Dst != ev.Orig.Dst {
			t.Errorf("clash %v: NAT tuple %v, want from %v to %v", ev.Orig, ev.NAT, nodeIP, ev.Orig.Dst)
		}
	}
	fwDropped := 0
	for _, ev := range others {
		switch ev.Orig.Dst.Port() {
		case 7, 9:
			fwDropped++
		default:
			t.Errorf("unexpected other drop %+v", ev)
		}
	}
	if fwDropped < len(fw) {
		t.Errorf("saw %d firewall drops, want at least %d (one per connection)", fwDropped, len(fw))
	}
	rt, err := tr.Retransmits()
	if err != nil {
		t.Fatalf("Retransmits: %v", err)
	}
	wantRT := min(2, len(delayed))
	dst80 := conns[0].Orig.Dst
	if rt[dst80] < uint64(wantRT) {
		t.Errorf("SYN retransmissions to %v: %d, want at least %d (kept delayed connections)", dst80, rt[dst80], wantRT)
	}
	stats, err := tr.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if es, err := elsewhere.Stats(); err != nil || es.SNATClashes+es.OtherDrops != 0 {
		t.Errorf("tracer of the server namespace reported %+v (%v), want no drops", es, err)
	}
	t.Logf("%d connections, %d delayed, insert_failed +%d, %d firewall drops, retransmits %v, stats %+v",
		len(conns), len(delayed), delta, fwDropped, rt, stats)
}

// TestCloseLeavesNothing checks that closing detaches and frees every program
// and map the tracer loaded, and pins nothing.
func TestCloseLeavesNothing(t *testing.T) {
	needRoot(t)
	pinnedBefore := bpffsEntries(t)
	tr, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	progs, maps := tr.objectIDs()
	if len(progs) < 2 || len(maps) < 3 {
		t.Fatalf("loaded %d programs and %d maps, want at least 2 and 3", len(progs), len(maps))
	}
	for _, id := range progs {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			t.Fatalf("program %d not loaded while tracing: %v", id, err)
		}
		p.Close()
	}
	// Readers racing with Close get an error, never a crash.
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; i < 1000; i++ {
				if _, err := tr.Retransmits(); err != nil {
					return
				}
				tr.Stats()
			}
		}()
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	readers.Wait()
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-tr.Events(); ok {
		t.Error("Events still open after Close")
	}
	// Freeing is asynchronous (RCU): poll, bounded.
	gone := func() bool {
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				p.Close()
				return false
			}
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				return false
			}
		}
		return true
	}
	for i := 0; !gone(); i++ {
		if i == 100 {
			t.Fatalf("programs %v or maps %v still loaded after Close", progs, maps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after := bpffsEntries(t); after != pinnedBefore {
		t.Errorf("bpffs entries: %d before, %d after", pinnedBefore, after)
	}
	if _, err := tr.Retransmits(); err == nil {
		t.Error("Retransmits after Close: want an error")
	}
}

func bpffsEntries(t *testing.T) int {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		return 0 // not mounted: nothing can be pinned there
	}
	entries, err := os.ReadDir("/sys/fs/bpf")
	if err != nil {
		t.Fatalf("reading /sys/fs/bpf: %v", err)
	}
	return len(entries)
}

// TestStartWithoutCapabilities drops CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN
// on one thread and checks that Start says which is missing.
func TestStartWithoutCapabilities(t *testing.T) {
	needRoot(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread loses capabilities
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		for _, c := range []uint{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_ADMIN} {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		tr, err := Start(context.Background(), Options{})
		if err == nil {
			tr.Close()
		}
		errc <- err
	}()
	err := <-errc
	var me *MissingError
	if !errors.As(err, &me) || me.Need != NeedCapBPF || !errors.Is(err, ErrMissing) {
		t.Fatalf("Start without CAP_BPF: %v, want a MissingError for %s", err, NeedCapBPF)
	}
}
