//go:build linux

package caps

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissingMatchesCapget(t *testing.T) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	for c, bit := range map[Cap]uint{NetAdmin: unix.CAP_NET_ADMIN, NetRaw: unix.CAP_NET_RAW, SysAdmin: unix.CAP_SYS_ADMIN, Perfmon: unix.CAP_PERFMON, BPF: unix.CAP_BPF} {
		if c.Bit != bit {
			t.Errorf("%s is bit %d, x/sys/unix says %d", c, c.Bit, bit)
		}
		want := data[c.Bit/32].Effective&(1<<(c.Bit%32)) != 0
		if got := Has(c); got != want {
			t.Errorf("Has(%s) = %v, capget says %v", c, got, want)
		}
	}
	if os.Geteuid() == 0 {
		if m, err := Missing(NetAdmin, SysAdmin); err != nil || len(m) != 0 {
			t.Errorf("root misses %v (%v)", m, err)
		}
	}
	if m, _ := Missing(Cap{70, "CAP_BOGUS"}); len(m) != 1 {
		t.Errorf("an unknown bit is not reported missing: %v", m)
	}
}
