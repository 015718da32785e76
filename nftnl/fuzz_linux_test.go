package nftnl

import (
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ruleEvent is the payload of an NFT_MSG_NEWRULE event for chain of table.
func ruleEvent(t testing.TB, table, chain string) []byte {
	t.Helper()
	b, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(chain), 0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}, b...)
}

// TestParseEvent decodes a rule event and refuses one shorter than its
// header.
func TestParseEvent(t *testing.T) {
	ev, err := ParseEvent(unix.NFT_MSG_NEWRULE, ruleEvent(t, "nat", "POSTROUTING"))
	if err != nil || ev.Family != unix.NFPROTO_IPV4 || ev.Table != "nat" || ev.Name != "POSTROUTING" {
		t.Errorf("ParseEvent: %+v, %v", ev, err)
	}
	if _, err := ParseEvent(unix.NFT_MSG_NEWRULE, []byte{2, 0}); err == nil {
		t.Error("a 2-byte event decoded without an error")
	}
}

// FuzzParseEvent feeds the decoders of kernel messages in this package
// (events, verdicts, xt NAT ranges) arbitrary bytes: errors, never panics.
func FuzzParseEvent(f *testing.F) {
	f.Add(uint16(unix.NFT_MSG_NEWRULE), ruleEvent(f, "nat", "POSTROUTING"))
	f.Add(uint16(unix.NFT_MSG_NEWCHAIN), ruleEvent(f, "nat", "KUBE-POSTROUTING"))
	f.Add(uint16(unix.NFT_MSG_NEWGEN), []byte{0, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		ParseEvent(typ, data)
		var c Commit
		c.add(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data})
		VerdictJump(DataVerdict(data))
		for _, rev := range []uint32{0, 1, 2} {
			if r, err := DecodeXTNATRange(data, familyIPv4, rev); err == nil && (r.MinIP == nil || r.MaxIP == nil) {
				t.Errorf("rev %d: decoded %+v without addresses", rev, r)
			}
		}
	})
}
