//go:build linux

package nftnl

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// MapJumps returns the chains the elements of the verdict map set (of
// table, in family) jump or go to, in the order the kernel lists them, and
// whether the dump was interrupted by a commit.
func (c *Conn) MapJumps(family byte, table, set string) ([]string, bool, error) {
	var out []string
	intr, err := c.DumpEach(unix.NFT_MSG_GETSETELEM, family, []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: append([]byte(set), 0)},
	}, func(m netlink.Message) error {
		if len(m.Data) < 4 {
			return nil
		}
		return Walk(m.Data[4:], func(typ uint16, list []byte) error {
			if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				return nil
			}
			return Walk(list, func(_ uint16, elem []byte) error {
				return Walk(elem, func(typ uint16, v []byte) error {
					if typ != unix.NFTA_SET_ELEM_DATA {
						return nil
					}
					if to, ok := VerdictJump(DataVerdict(v)); ok {
						out = append(out, CString(to))
					}
					return nil
				})
			})
		})
	})
	if err != nil {
		return nil, intr, fmt.Errorf("reading the elements of map %s %s: %w", table, set, err)
	}
	return out, intr, nil
}
