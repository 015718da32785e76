package xtables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

// struct xt_recent_mtinfo_v1 (linux/netfilter/xt_recent.h): seconds,
// hit_count (u32), check_set, invert (u8), name[200], side (u8), then the
// mask (union nf_inet_addr, 4-byte aligned).
const (
	recentRevision = 1
	recentSize     = 228
	recentName     = 10
	recentSide     = 210
	recentMask     = 212

	recentCheck, recentSet, recentUpdate, recentRemove, recentTTL, recentReap = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
	recentKnown                                                               = 0x3f
)

// writeRecent prints a recent match as libxt_recent 1.8.9's recent_save
// does for the table's family — what kube-proxy writes for a service with
// sessionAffinity ClientIP ("--rcheck --seconds 10800 --reap --name
// KUBE-SEP-… --mask 255.255.255.255 --rsource"). A flag or side it does
// not know is ErrUnsupported.
func (p *Parsed) writeRecent(b *bytes.Buffer, d []byte) error {
	ne := binary.NativeEndian
	flags, side := d[8], d[recentSide]
	if flags&^recentKnown != 0 || side > 1 {
		return fmt.Errorf("recent flags %#x, side %d: %w", flags, side, ErrUnsupported)
	}
	b.WriteString(not(d[9] != 0))
	for _, f := range []struct {
		bit byte
		opt string
	}{{recentSet, " --set"}, {recentCheck, " --rcheck"}, {recentUpdate, " --update"}, {recentRemove, " --remove"}} {
		if flags&f.bit != 0 {
			b.WriteString(f.opt)
		}
	}
	if s := ne.Uint32(d); s != 0 {
		b.WriteString(" --seconds " + strconv.Itoa(int(int32(s)))) // printed with %d
	}
	if flags&recentReap != 0 {
		b.WriteString(" --reap")
	}
	if h := ne.Uint32(d[4:]); h != 0 {
		b.WriteString(" --hitcount " + strconv.Itoa(int(int32(h))))
	}
	if flags&recentTTL != 0 {
		b.WriteString(" --rttl")
	}
	b.WriteString(" --name ")
	b.Write(cBytes(d[recentName : recentName+200]))
	mask := netip.AddrFrom4([4]byte(d[recentMask:]))
	if p.Table.Family == IPv6 {
		mask = netip.AddrFrom16([16]byte(d[recentMask:]))
	}
	b.WriteString(" --mask " + ntop(mask))
	if side == 0 {
		b.WriteString(" --rsource")
	} else {
		b.WriteString(" --rdest")
	}
	return nil
}
