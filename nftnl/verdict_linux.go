//go:build linux

package nftnl

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// VerdictJump returns the chain an NFTA_DATA_VERDICT attribute (the data of
// an immediate or of a verdict map element) jumps or goes to; ok is false
// for every other verdict.
func VerdictJump(verdict []byte) (chain []byte, ok bool) {
	var code int32
	Walk(verdict, func(typ uint16, v []byte) error {
		switch typ {
		case unix.NFTA_VERDICT_CODE:
			if len(v) == 4 {
				code = int32(binary.BigEndian.Uint32(v))
			}
		case unix.NFTA_VERDICT_CHAIN:
			chain = v
		}
		return nil
	})
	return chain, chain != nil && (code == unix.NFT_JUMP || code == unix.NFT_GOTO)
}

// DataVerdict returns the NFTA_DATA_VERDICT inside an NFTA_DATA-nested
// attribute (NFTA_IMMEDIATE_DATA, NFTA_SET_ELEM_DATA), or nil.
func DataVerdict(data []byte) []byte {
	var verdict []byte
	Walk(data, func(typ uint16, v []byte) error {
		if typ == unix.NFTA_DATA_VERDICT {
			verdict = v
		}
		return nil
	})
	return verdict
}
