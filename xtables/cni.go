package xtables

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
)

// The renderers of what CNI plugins and service meshes write into nat
// tables besides source NAT: CONNMARK (AWS VPC CNI marks its SNAT-exempt
// connections) and the owner match (Istio's sidecar redirect leaves the
// proxy's own traffic alone by its uid), printed as iptables 1.8.9's
// libxt_CONNMARK and libxt_owner save them. Without them such a table is
// read through iptables-legacy-save instead.

// The CONNMARK target (struct xt_connmark_tginfo2, revision 2): ctmark,
// ctmask, nfmask, then shift direction, shift bits and mode.
const connmarkSize = 15

var connmarkModes = []string{" --set-xmark ", " --save-mark", " --restore-mark"}

// writeConnmark prints a revision-2 CONNMARK target as connmark_tg_save_v2.
func writeConnmark(b *bytes.Buffer, d []byte) error {
	ne := binary.NativeEndian
	ctmark, ctmask, nfmask := ne.Uint32(d), ne.Uint32(d[4:]), ne.Uint32(d[8:])
	dir, bits, mode := d[12], d[13], d[14]
	if int(mode) >= len(connmarkModes) || dir > 1 {
		return fmt.Errorf("CONNMARK mode %d, shift direction %d: %w", mode, dir, ErrUnsupported)
	}
	b.WriteString(" -j CONNMARK" + connmarkModes[mode])
	if mode == 0 {
		b.WriteString(hex(ctmark) + "/" + hex(ctmask))
	} else {
		b.WriteString(" --nfmask " + hex(nfmask) + " --ctmask " + hex(ctmask))
	}
	if bits != 0 {
		b.WriteString([]string{" --left-shift-mark ", " --right-shift-mark "}[dir] + strconv.Itoa(int(bits)))
	}
	return nil
}

func hex(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

// The owner match (struct xt_owner_match_info, revision 1): uid and gid
// ranges, then the match and invert flags.
const (
	ownerSize   = 18
	ownerUID    = 0x1
	ownerGID    = 0x2
	ownerSocket = 0x4
	ownerSuppl  = 0x8
)

// writeOwner prints an owner match as owner_mt_save does: each condition
// set, in the order socket, uid, gid, supplementary groups, numbers as
// numbers (save never names users).
func writeOwner(b *bytes.Buffer, d []byte) error {
	ne := binary.NativeEndian
	match, invert := d[16], d[17]
	if match&^0xf != 0 {
		return fmt.Errorf("owner flags %#x: %w", match, ErrUnsupported)
	}
	item := func(flag uint8, label string, lo, hi uint32, ranged bool) {
		if match&flag == 0 {
			return
		}
		b.WriteString(not(invert&flag != 0) + " " + label)
		if !ranged {
			return
		}
		b.WriteString(" " + strconv.FormatUint(uint64(lo), 10))
		if lo != hi {
			b.WriteString("-" + strconv.FormatUint(uint64(hi), 10))
		}
	}
	item(ownerSocket, "--socket-exists", 0, 0, false)
	item(ownerUID, "--uid-owner", ne.Uint32(d), ne.Uint32(d[4:]), true)
	item(ownerGID, "--gid-owner", ne.Uint32(d[8:]), ne.Uint32(d[12:]), true)
	item(ownerSuppl, "--suppl-groups", 0, 0, false)
	return nil
}
