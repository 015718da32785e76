package ctstat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
)

// ctnetlink message types and attributes (include/uapi/linux/netfilter/
// nfnetlink_conntrack.h).
const (
	nfnlSubsysCTNetlink = 1
	msgGetStatsCPU      = 4 // IPCTNL_MSG_CT_GET_STATS_CPU
	msgGetStats         = 5 // IPCTNL_MSG_CT_GET_STATS

	// CTA_STATS_*; 1 (searched), 3 (new), 6 (delete) and 7 (delete_list)
	// are no longer sent by the kernel and are ignored.
	ctaStatsFound         = 2
	ctaStatsInvalid       = 4
	ctaStatsIgnore        = 5
	ctaStatsInsert        = 8
	ctaStatsInsertFailed  = 9
	ctaStatsDrop          = 10
	ctaStatsEarlyDrop     = 11
	ctaStatsError         = 12
	ctaStatsSearchRestart = 13
	ctaStatsClashResolve  = 14 // 5.10+
	ctaStatsChainTooLong  = 15 // 5.15+

	ctaStatsGlobalEntries    = 1
	ctaStatsGlobalMaxEntries = 2 // 4.18+

	nfgenmsgLen = 4
)

// StatsCPUType and StatsType are the netlink header types of the replies to
// IPCTNL_MSG_CT_GET_STATS_CPU and IPCTNL_MSG_CT_GET_STATS.
const (
	StatsCPUType = netlink.HeaderType(nfnlSubsysCTNetlink<<8 | msgGetStatsCPU)
	StatsType    = netlink.HeaderType(nfnlSubsysCTNetlink<<8 | msgGetStats)
)

// Global holds the namespace-wide counters of IPCTNL_MSG_CT_GET_STATS.
type Global struct {
	Entries uint64 // CTA_STATS_GLOBAL_ENTRIES
	Max     uint64 // CTA_STATS_GLOBAL_MAX_ENTRIES; 0 before 4.18
}

// statsAttr returns where the value of attribute typ goes, or nil for an
// attribute ctstat does not keep.
func statsAttr(c *Counters, typ uint16) *uint64 {
	switch typ {
	case ctaStatsFound:
		return &c.Found
	case ctaStatsInvalid:
		return &c.Invalid
	case ctaStatsIgnore:
		return &c.Ignore
	case ctaStatsInsert:
		return &c.Insert
	case ctaStatsInsertFailed:
		return &c.InsertFailed
	case ctaStatsDrop:
		return &c.Drop
	case ctaStatsEarlyDrop:
		return &c.EarlyDrop
	case ctaStatsError:
		return &c.Error
	case ctaStatsSearchRestart:
		return &c.SearchRestart
	case ctaStatsClashResolve:
		return &c.ClashResolve
	case ctaStatsChainTooLong:
		return &c.ChainTooLong
	}
	return nil
}

// DecodeStatsCPU decodes the replies to IPCTNL_MSG_CT_GET_STATS_CPU: one
// message per CPU, the CPU number in the nfgenmsg resource id, every attribute
// a big-endian u32. It decodes CTA_STATS_CLASH_RESOLVE and
// CTA_STATS_CHAIN_TOOLONG, which ti-mo/conntrack v0.6 drops. The CPUs are
// returned in message order; a message of another type, a short message, an
// attribute that is not 4 bytes long or a CPU given twice is an error naming the
// message index.
func DecodeStatsCPU(msgs []netlink.Message) ([]CPU, error) {
	cpus := make([]CPU, 0, len(msgs))
	seen := make(map[int]bool, len(msgs))
	for i, m := range msgs {
		cpu, err := decodeStatsCPU(m)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		if seen[cpu.CPU] {
			return nil, fmt.Errorf("message %d: cpu %d given twice", i, cpu.CPU)
		}
		seen[cpu.CPU] = true
		cpus = append(cpus, cpu)
	}
	return cpus, nil
}

func decodeStatsCPU(m netlink.Message) (CPU, error) {
	if m.Header.Type != StatsCPUType {
		return CPU{}, fmt.Errorf("type %#x, want %#x (IPCTNL_MSG_CT_GET_STATS_CPU)", uint16(m.Header.Type), uint16(StatsCPUType))
	}
	if len(m.Data) < nfgenmsgLen {
		return CPU{}, fmt.Errorf("%d bytes, shorter than nfgenmsg", len(m.Data))
	}
	cpu := CPU{CPU: int(binary.BigEndian.Uint16(m.Data[2:4]))}
	err := decodeU32Attrs(m.Data[nfgenmsgLen:], func(typ uint16, v uint32) {
		if p := statsAttr(&cpu.Counters, typ); p != nil {
			*p = uint64(v)
		}
	})
	if err != nil {
		return CPU{}, err
	}
	return cpu, nil
}

// DecodeStats decodes the reply to IPCTNL_MSG_CT_GET_STATS.
func DecodeStats(m netlink.Message) (Global, error) {
	if m.Header.Type != StatsType {
		return Global{}, fmt.Errorf("type %#x, want %#x (IPCTNL_MSG_CT_GET_STATS)", uint16(m.Header.Type), uint16(StatsType))
	}
	if len(m.Data) < nfgenmsgLen {
		return Global{}, fmt.Errorf("%d bytes, shorter than nfgenmsg", len(m.Data))
	}
	var g Global
	err := decodeU32Attrs(m.Data[nfgenmsgLen:], func(typ uint16, v uint32) {
		switch typ {
		case ctaStatsGlobalEntries:
			g.Entries = uint64(v)
		case ctaStatsGlobalMaxEntries:
			g.Max = uint64(v)
		}
	})
	if err != nil {
		return Global{}, err
	}
	return g, nil
}

// decodeU32Attrs calls fn for every attribute of b, each a big-endian u32.
func decodeU32Attrs(b []byte, fn func(typ uint16, v uint32)) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return fmt.Errorf("decoding attributes: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if n := len(ad.Bytes()); n != 4 {
			return fmt.Errorf("attribute %d: %d bytes, want 4 (be32)", ad.Type(), n)
		}
		fn(ad.Type(), ad.Uint32())
	}
	if err := ad.Err(); err != nil {
		return fmt.Errorf("decoding attributes: %w", err)
	}
	return nil
}

// ErrNoCPUs is returned by ReadNetlink when the kernel answered with no CPU.
var ErrNoCPUs = errors.New("ctnetlink returned no CPU statistics")

// IsPermission reports whether err comes from a missing privilege: EPERM from
// ctnetlink without CAP_NET_ADMIN, EACCES/EPERM opening a /proc file.
func IsPermission(err error) bool { return errors.Is(err, os.ErrPermission) }
