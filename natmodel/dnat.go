package natmodel

import (
	"fmt"
	"net/netip"
)

// DNAT is nf_nat_setup_info(ct, r, NF_NAT_MANIP_DST) for a range of one
// address and port, as a service rule installs (kube-proxy's DNAT to one
// endpoint): the entry's reply now comes from to. A single-address,
// single-port range is returned by get_unique_tuple without a uniqueness
// check, and destination NAT does not enter the bysource hash. It must come
// before SNAT, as PREROUTING comes before POSTROUTING; a later SNAT chooses
// the source for the new destination.
func (t *Table) DNAT(id ConnID, to netip.AddrPort) error {
	idx, ok := t.get(id)
	if !ok || t.conns[idx].confirmed || t.conns[idx].natDone {
		return ErrUnknownConn
	}
	if !to.Addr().Is4() {
		return fmt.Errorf("DNAT to %v: only IPv4 is modelled", to)
	}
	c := &t.conns[idx]
	cur := c.reply.invert()
	cur.setDst(ip4(to.Addr()), to.Port())
	c.reply = cur.invert()
	return nil
}
