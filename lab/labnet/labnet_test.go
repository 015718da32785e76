package labnet

import (
	"net/netip"
	"testing"
)

func TestAddresses(t *testing.T) {
	for _, tt := range []struct {
		got  netip.Addr
		want string
	}{
		{PodAddr(0), "10.98.0.2"}, {PodAddr(253), "10.98.0.255"}, {PodAddr(254), "10.98.1.0"},
		{PodAddr(65533), "10.98.255.255"}, {PodAddr(65534), "10.99.0.0"},
		{ServerAddr(0), "198.51.100.2"}, {NodeAddr(3), "198.51.103.1"}, {ServerAddr(156), "198.52.0.2"},
	} {
		if tt.got.String() != tt.want {
			t.Errorf("got %v, want %s", tt.got, tt.want)
		}
	}
	if UplinkNet(1).String() != "198.51.101.0/24" || UplinkName(2) != "up2" {
		t.Errorf("UplinkNet(1) = %v, UplinkName(2) = %s", UplinkNet(1), UplinkName(2))
	}
	for a, ok := range map[string]bool{"198.51.100.1": true, "198.51.100.9": true, "198.51.100.2": false, "198.51.100.0": false, "198.51.100.255": false, "198.51.101.5": false} {
		if SNATHost(netip.MustParseAddr(a)) != ok {
			t.Errorf("SNATHost(%s) != %v", a, ok)
		}
	}
	if !PodNet.Contains(PodAddr(999)) || !PodNet.Contains(BridgeIP) {
		t.Error("pods outside PodNet")
	}
}
