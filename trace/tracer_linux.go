//go:build linux

package trace

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/snatrace/snatrace/internal/caps"
)

// Names of the kernel objects the programs attach to, and of the drop reason.
const (
	confirmFunc        = "__nf_conntrack_confirm"
	tpKfreeSkb         = "kfree_skb"
	tpRetransmit       = "tcp_retransmit_skb"
	dropReasonEnum     = "skb_drop_reason"
	dropReasonPrefix   = "SKB_DROP_REASON_"
	netfilterDropValue = "SKB_DROP_REASON_NETFILTER_DROP"
)

// Tracer reports SYNs dropped by netfilter and counts SYN retransmissions
// until it is closed. Its methods are safe for concurrent use.
type Tracer struct {
	mode     Mode
	fallback error // why ModeAuto did not use fexit
	coll     *ebpf.Collection
	links    []link.Link
	rd       *ringbuf.Reader
	events   chan Event

	snatClashes atomic.Uint64
	otherDrops  atomic.Uint64
	paws        atomic.Uint64
	twPAWS      uint32 // the drop reason of a TIME_WAIT PAWS rejection asked for, 0 none
	resolved    atomic.Uint64

	mu        sync.RWMutex // guards coll and closed against Close
	closed    bool
	done      chan struct{} // closed by Close
	reader    sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start checks that the host can run the tracer (kernel BTF, CAP_BPF,
// CAP_PERFMON, the tracepoints and the drop reason), loads and attaches the
// programs and starts delivering events. A host that lacks something yields a
// *MissingError (errors.Is(err, ErrMissing)) naming it, before anything is
// loaded. The tracer stops when ctx is done or Close is called.
func Start(ctx context.Context, opts Options) (*Tracer, error) {
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}
	if _, err := ParseMode(string(opts.Mode)); err != nil {
		return nil, fmt.Errorf("starting tracer: %w", err)
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, &MissingError{Need: NeedBTF, Err: err}
	}
	if err := checkCaps(); err != nil {
		return nil, err
	}
	reasons, nfDrop, err := preflight(kspec)
	if err != nil {
		return nil, err
	}
	clk, err := nowClock(opts.Now)
	if err != nil {
		return nil, err
	}

	t := &Tracer{events: make(chan Event, opts.Buffer), done: make(chan struct{})}
	if opts.PAWS {
		t.twPAWS = reasonValue(reasons, twPAWSReason)
	}
	switch opts.Mode {
	case ModeTracepoint:
		err = t.load(kspec, nfDrop, opts.NetNS, false)
	case ModeFexit:
		err = t.load(kspec, nfDrop, opts.NetNS, true)
		if err != nil {
			err = &MissingError{Need: NeedFexit, Err: err}
		}
	default:
		if t.fallback = t.load(kspec, nfDrop, opts.NetNS, true); t.fallback != nil {
			err = t.load(kspec, nfDrop, opts.NetNS, false)
		}
	}
	if err != nil {
		return nil, err
	}

	dec := decoder{clock: clk, reasons: reasons}
	t.reader.Add(1)
	go t.read(dec)
	go func() {
		select {
		case <-ctx.Done():
			t.Close()
		case <-t.done:
		}
	}()
	return t, nil
}

// preflight checks the kernel's BTF for the tracepoints and the drop reason
// the programs need, and returns the drop reasons by value and the value of
// NETFILTER_DROP.
func preflight(kspec *btf.Spec) (map[uint32]string, uint32, error) {
	for _, tp := range []string{tpKfreeSkb, tpRetransmit} {
		var td *btf.Typedef
		if err := kspec.TypeByName("btf_trace_"+tp, &td); err != nil {
			return nil, 0, &MissingError{Need: NeedTracepoint, Detail: tracepointName(tp) + " (tp_btf)", Err: err}
		}
	}
	return dropReasons(kspec)
}

func tracepointName(tp string) string {
	if tp == tpKfreeSkb {
		return "skb:kfree_skb"
	}
	return "tcp:" + tp
}

// load loads the collection and attaches its programs; on error it leaves
// nothing loaded.
func (t *Tracer) load(kspec *btf.Spec, nfDrop, netns uint32, withFexit bool) (err error) {
	spec, err := loadTraceBPF()
	if err != nil {
		return fmt.Errorf("loading eBPF object: %w", err)
	}
	cfg := traceBPFTracerConfig{ReasonNetfilterDrop: nfDrop, Netns: netns, ClassifyInTp: 1, ReasonTwPaws: t.twPAWS}
	t.mode = ModeTracepoint
	if withFexit {
		cfg.ClassifyInTp = 0
		t.mode = ModeFexit
	} else {
		delete(spec.Programs, "confirm_exit")
		delete(spec.Programs, "confirm_entry")
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kspec},
	})
	if err != nil {
		return fmt.Errorf("loading eBPF programs: %w", err)
	}
	t.coll = coll
	defer func() {
		if err != nil {
			t.release()
		}
	}()
	if err := coll.Maps["config"].Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("writing tracer config: %w", err)
	}
	// confirm_exit first: a clash between the two attaches must not be
	// seen by kfree_skb as an other drop.
	for _, name := range []string{"confirm_entry", "confirm_exit", "kfree_skb", "retransmit"} {
		prog, ok := coll.Programs[name]
		if !ok {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attaching %s: %w", name, err)
		}
		t.links = append(t.links, l)
	}
	t.rd, err = ringbuf.NewReader(coll.Maps["events"])
	if err != nil {
		return fmt.Errorf("opening ring buffer: %w", err)
	}
	return nil
}

// release detaches and frees everything load created.
func (t *Tracer) release() error {
	var errs []error
	if t.rd != nil {
		errs = append(errs, t.rd.Close())
		t.rd = nil
	}
	for i := len(t.links) - 1; i >= 0; i-- {
		errs = append(errs, t.links[i].Close())
	}
	t.links = nil
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
	return errors.Join(errs...)
}

// read drains the ring buffer. In ModeTracepoint it hands the events to
// verify, in order, so the ctnetlink lookups (and the rare scan of /proc for
// a new namespace) never hold up the ring buffer; otherwise it delivers them.
func (t *Tracer) read(dec decoder) {
	defer t.reader.Done()
	send := t.deliver
	if t.mode == ModeTracepoint {
		pending := make(chan Event, cap(t.events))
		t.reader.Add(1)
		go t.verify(pending)
		defer close(pending)
		send = func(ev Event) bool {
			select {
			case pending <- ev:
				return true
			case <-t.done:
				return false
			}
		}
	} else {
		defer close(t.events)
	}
	var rec ringbuf.Record
	for {
		if err := t.rd.ReadInto(&rec); err != nil {
			// Closed by Close; any other error is not recoverable either.
			return
		}
		ev, err := dec.decode(rec.RawSample)
		if err != nil {
			continue
		}
		if !send(ev) {
			return
		}
	}
}

// verify tells the tracepoint's SNAT clash candidates from other drops by
// their REPLY tuple (replyChecker), and delivers every event.
func (t *Tracer) verify(pending <-chan Event) {
	defer t.reader.Done()
	defer close(t.events)
	checker := newReplyChecker()
	defer checker.Close()
	for ev := range pending {
		if ev.Kind == KindSNATClash && ev.Hook == HookKfreeSkb {
			switch taken, ok := checker.taken(ev); {
			case !ok:
				ev.Evidence = EvidenceUnverified
			case taken:
				ev.Evidence = EvidenceReplyTaken
			default:
				ev.Kind = KindOtherDrop
			}
		}
		if !t.deliver(ev) {
			return
		}
	}
}

// deliver counts ev and sends it on Events; false when the tracer closed.
func (t *Tracer) deliver(ev Event) bool {
	switch {
	case ev.Kind == KindSNATClash:
		t.snatClashes.Add(1)
	case ev.Kind.Resolved():
		t.resolved.Add(1)
	case ev.Kind == KindPAWSTimewait:
		t.paws.Add(1)
	default:
		t.otherDrops.Add(1)
	}
	select {
	case t.events <- ev:
		return true
	case <-t.done:
		return false
	}
}

// Mode returns the mode in use: ModeFexit or ModeTracepoint.
func (t *Tracer) Mode() Mode { return t.mode }

// PAWS reports whether the tracer reports TIME_WAIT PAWS rejections: they
// were asked for (Options.PAWS) and the kernel has their drop reason.
func (t *Tracer) PAWS() bool { return t.twPAWS != 0 }

// twPAWSReason is the drop reason of a SYN a TIME_WAIT socket rejected by
// PAWS ("tcp: add TCP_RFC7323_TW_PAWS drop reason", 6.16).
const twPAWSReason = "TCP_RFC7323_TW_PAWS"

// reasonValue returns the value of the drop reason named name, 0 when the
// kernel has none.
func reasonValue(reasons map[uint32]string, name string) uint32 {
	for v, n := range reasons {
		if n == name {
			return v
		}
	}
	return 0
}

// Fallback returns why ModeAuto runs in ModeTracepoint (the fexit program
// could not be loaded or attached), or nil.
func (t *Tracer) Fallback() error { return t.fallback }

// Events returns the dropped SYNs in the order the ring buffer delivered
// them. The channel is closed when the tracer stops. A slow reader makes the
// kernel discard events once the ring buffer is full (Stats.Lost).
func (t *Tracer) Events() <-chan Event { return t.events }

// Retransmits returns the SYN retransmissions counted since Start, per
// destination address and port, across every network namespace.
func (t *Tracer) Retransmits() (map[netip.AddrPort]uint64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, errors.New("reading SYN retransmissions: tracer closed")
	}
	out := make(map[netip.AddrPort]uint64)
	var (
		key traceBPFDestKey
		val uint64
	)
	it := t.coll.Maps["syn_retransmits"].Iterate()
	for it.Next(&key, &val) {
		// Port is in network order in memory.
		port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, key.Port))
		var a netip.Addr
		switch key.Family {
		case afInet:
			a = netip.AddrFrom4([4]byte(key.Addr[:4]))
		case afInet6:
			a = netip.AddrFrom16(key.Addr)
		default:
			continue
		}
		out[netip.AddrPortFrom(a, port)] += val
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading SYN retransmissions: %w", err)
	}
	return out, nil
}

// Stats returns the kernel-side counters summed over CPUs.
func (t *Tracer) Stats() (Stats, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return Stats{}, errors.New("reading tracer stats: tracer closed")
	}
	s := Stats{SNATClashes: t.snatClashes.Load(), OtherDrops: t.otherDrops.Load(), ResolvedClashes: t.resolved.Load(), PAWSTimewait: t.paws.Load()}
	for idx, dst := range []*uint64{&s.Lost, &s.SYNRetransmits} {
		var perCPU []uint64
		if err := t.coll.Maps["stats"].Lookup(uint32(idx), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("reading tracer stats: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	for name, prog := range t.coll.Programs {
		ps, err := prog.Stats()
		if err != nil {
			return Stats{}, fmt.Errorf("reading tracer stats: program %s: %w", name, err)
		}
		s.Missed += ps.RecursionMisses
	}
	return s, nil
}

// Close detaches the programs and frees them and their maps; nothing is
// pinned, so nothing is left behind. The Events channel is closed. Close is
// idempotent.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		close(t.done)
		rdErr := t.rd.Close() // unblocks read
		t.reader.Wait()
		t.mu.Lock()
		defer t.mu.Unlock()
		t.closed = true
		t.rd = nil // closed above
		t.closeErr = errors.Join(rdErr, t.release())
	})
	return t.closeErr
}

// checkCaps reports the first missing capability among CAP_BPF and
// CAP_PERFMON; CAP_SYS_ADMIN stands in for both.
func checkCaps() error {
	missing, err := caps.Missing(caps.SysAdmin, caps.BPF, caps.Perfmon)
	if err != nil {
		return &MissingError{Need: NeedCapBPF, Detail: "(reading capabilities)", Err: err}
	}
	lacks := func(c caps.Cap) bool { return slices.Contains(missing, c) }
	switch {
	case !lacks(caps.SysAdmin):
		return nil
	case lacks(caps.BPF):
		return &MissingError{Need: NeedCapBPF, Detail: "(run as root or grant cap_bpf,cap_perfmon)"}
	case lacks(caps.Perfmon):
		return &MissingError{Need: NeedCapPerfmon, Detail: "(run as root or grant cap_bpf,cap_perfmon)"}
	}
	return nil
}

// dropReasons reads enum skb_drop_reason from the kernel's BTF: the name of
// every value (prefix stripped) and the value of NETFILTER_DROP.
func dropReasons(kspec *btf.Spec) (map[uint32]string, uint32, error) {
	var enum *btf.Enum
	if err := kspec.TypeByName(dropReasonEnum, &enum); err != nil {
		return nil, 0, &MissingError{Need: NeedDropReason, Detail: "enum " + dropReasonEnum, Err: err}
	}
	return reasonNames(enum)
}

// reasonNames maps the values of enum skb_drop_reason to their names.
func reasonNames(enum *btf.Enum) (map[uint32]string, uint32, error) {
	names := make(map[uint32]string, len(enum.Values))
	var (
		nfDrop uint32
		found  bool
	)
	for _, v := range enum.Values {
		names[uint32(v.Value)] = strings.TrimPrefix(v.Name, dropReasonPrefix)
		if v.Name == netfilterDropValue {
			nfDrop, found = uint32(v.Value), true
		}
	}
	if !found {
		return nil, 0, &MissingError{Need: NeedDropReason, Detail: netfilterDropValue}
	}
	return names, nfDrop, nil
}

// nowClock pairs the wall clock with CLOCK_MONOTONIC, the clock of
// bpf_ktime_get_ns.
func nowClock(now func() time.Time) (clock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return clock{}, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	return clock{wall: now(), mono: time.Duration(ts.Nano())}, nil
}

// objectIDs returns the kernel IDs of the loaded programs and maps.
func (t *Tracer) objectIDs() (progs []ebpf.ProgramID, maps []ebpf.MapID) {
	if t.coll == nil {
		return nil, nil
	}
	for _, p := range t.coll.Programs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				progs = append(progs, id)
			}
		}
	}
	for _, m := range t.coll.Maps {
		if info, err := m.Info(); err == nil {
			if id, ok := info.ID(); ok {
				maps = append(maps, id)
			}
		}
	}
	return progs, maps
}
