package ctstat

import "math"

// Counters are the conntrack counters of one CPU, or a sum over CPUs.
//
// Field meaning (KERNEL.md §4): InsertFailed and Drop count packets whose
// conntrack entry could not be confirmed (the SNAT race for TCP); since 5.10
// ClashResolve counts clashes that were resolved (UDP) and InsertFailed only
// the unresolved ones. ChainTooLong (5.15+) counts hash chains found too long.
// Error is the /proc column icmp_error and the ctnetlink attribute
// CTA_STATS_ERROR. Insert reads 0 on modern kernels.
type Counters struct {
	Found, Invalid, Ignore, Insert, InsertFailed, Drop, EarlyDrop, Error,
	SearchRestart, ClashResolve, ChainTooLong uint64
}

// Sub returns c-o field by field. The kernel keeps each per-CPU counter in
// 32 bits (/proc prints %08x, ctnetlink sends be32), so a counter that went
// past 2^32-1 between two readings wraps: when both readings fit in 32 bits
// and the difference modulo 2^32 is below 2^31, that is the delta
// (0xfffffff0 -> 0x10 is 0x20, not 0). Any other decrease is a reset (a
// namespace recreated) and gives 0, as does one of a sum over CPUs: never a
// huge number.
func (c Counters) Sub(o Counters) Counters {
	sub := func(a, b uint64) uint64 {
		switch {
		case a >= b:
			return a - b
		case a <= math.MaxUint32 && b <= math.MaxUint32 && uint32(a-b) < 1<<31:
			return uint64(uint32(a - b))
		}
		return 0
	}
	return Counters{
		Found:         sub(c.Found, o.Found),
		Invalid:       sub(c.Invalid, o.Invalid),
		Ignore:        sub(c.Ignore, o.Ignore),
		Insert:        sub(c.Insert, o.Insert),
		InsertFailed:  sub(c.InsertFailed, o.InsertFailed),
		Drop:          sub(c.Drop, o.Drop),
		EarlyDrop:     sub(c.EarlyDrop, o.EarlyDrop),
		Error:         sub(c.Error, o.Error),
		SearchRestart: sub(c.SearchRestart, o.SearchRestart),
		ClashResolve:  sub(c.ClashResolve, o.ClashResolve),
		ChainTooLong:  sub(c.ChainTooLong, o.ChainTooLong),
	}
}

// Add returns c+o field by field.
func (c Counters) Add(o Counters) Counters {
	return Counters{
		Found:         c.Found + o.Found,
		Invalid:       c.Invalid + o.Invalid,
		Ignore:        c.Ignore + o.Ignore,
		Insert:        c.Insert + o.Insert,
		InsertFailed:  c.InsertFailed + o.InsertFailed,
		Drop:          c.Drop + o.Drop,
		EarlyDrop:     c.EarlyDrop + o.EarlyDrop,
		Error:         c.Error + o.Error,
		SearchRestart: c.SearchRestart + o.SearchRestart,
		ClashResolve:  c.ClashResolve + o.ClashResolve,
		ChainTooLong:  c.ChainTooLong + o.ChainTooLong,
	}
}

// CPU holds the counters of one CPU.
type CPU struct {
	// CPU is the CPU number: the nfgenmsg resource id from ctnetlink, the
	// line index (0-based, after the header) from /proc.
	CPU int
	Counters
}

// Snapshot is one reading of the counters of a network namespace.
type Snapshot struct {
	// Source is "proc" or "netlink".
	Source string
	// Entries is the number of conntrack entries of the namespace: a gauge.
	// From /proc it is the entries column of the first CPU line; from
	// ctnetlink it is CTA_STATS_GLOBAL_ENTRIES.
	Entries uint64
	// Max is the table size (nf_conntrack_max) from ctnetlink
	// CTA_STATS_GLOBAL_MAX_ENTRIES (4.18+); 0 from /proc, use ReadMax.
	Max uint64
	// CPUs holds one element per possible CPU, in the kernel's order.
	CPUs []CPU
	// Columns are the header names of the /proc file; nil from ctnetlink.
	Columns []string
}

// Source names.
const (
	SourceProc    = "proc"
	SourceNetlink = "netlink"
)

// Total returns the sum of the counters over all CPUs.
func (s Snapshot) Total() Counters {
	var t Counters
	for _, c := range s.CPUs {
		t = t.Add(c.Counters)
	}
	return t
}

// Delta returns after-before per CPU, matching CPUs by number; a CPU absent
// from before counts from zero, one absent from after is left out. Each field
// saturates at 0 (see Counters.Sub). Source, Entries, Max and Columns are those
// of after: Entries and Max are gauges, not counters.
func Delta(before, after Snapshot) Snapshot {
	prev := make(map[int]Counters, len(before.CPUs))
	for _, c := range before.CPUs {
		prev[c.CPU] = c.Counters
	}
	d := Snapshot{
		Source:  after.Source,
		Entries: after.Entries,
		Max:     after.Max,
		Columns: after.Columns,
		CPUs:    make([]CPU, 0, len(after.CPUs)),
	}
	for _, c := range after.CPUs {
		d.CPUs = append(d.CPUs, CPU{CPU: c.CPU, Counters: c.Counters.Sub(prev[c.CPU])})
	}
	return d
}
