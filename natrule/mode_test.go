package natrule

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/natmodel"
)

func TestParseMode(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		in    string
		want  Mode
		canon string // "" means same as in
		flags natmodel.Flags
	}{
		{in: "none", want: Mode{}},
		{in: "masquerade", want: Mode{Action: Masquerade}},
		{in: "masquerade random", want: Mode{Action: Masquerade, Random: true}, flags: natmodel.ProtoRandom},
		{in: "masquerade fully-random", want: Mode{Action: Masquerade, FullyRandom: true}, flags: natmodel.ProtoRandomFully},
		{in: "masquerade persistent", want: Mode{Action: Masquerade, Persistent: true}, flags: natmodel.Persistent},
		{in: "masquerade to :1024-1100", want: Mode{Action: Masquerade, PortMin: 1024, PortMax: 1100}, flags: natmodel.ProtoSpecified},
		{in: "masquerade to :5000", want: Mode{Action: Masquerade, PortMin: 5000, PortMax: 5000}, flags: natmodel.ProtoSpecified},
		{in: "masquerade to :1024-1100 random,fully-random", want: Mode{Action: Masquerade, PortMin: 1024, PortMax: 1100, Random: true, FullyRandom: true},
			flags: natmodel.ProtoSpecified | natmodel.ProtoRandom | natmodel.ProtoRandomFully},
		{in: "masquerade fully-random persistent", canon: "masquerade fully-random,persistent",
			want: Mode{Action: Masquerade, FullyRandom: true, Persistent: true}, flags: natmodel.ProtoRandomFully | natmodel.Persistent},
		{in: "snat to 192.0.2.1", want: Mode{Action: SNAT, AddrMin: a("192.0.2.1"), AddrMax: a("192.0.2.1")}, flags: natmodel.MapIPs},
		{in: "snat ip to 192.0.2.1", canon: "snat to 192.0.2.1", want: Mode{Action: SNAT, AddrMin: a("192.0.2.1"), AddrMax: a("192.0.2.1")}, flags: natmodel.MapIPs},
		{in: "snat to 192.0.2.1:2000-2100 fully-random,persistent",
			want:  Mode{Action: SNAT, AddrMin: a("192.0.2.1"), AddrMax: a("192.0.2.1"), PortMin: 2000, PortMax: 2100, FullyRandom: true, Persistent: true},
			flags: natmodel.MapIPs | natmodel.ProtoSpecified | natmodel.ProtoRandomFully | natmodel.Persistent},
		{in: "snat to 192.0.2.1-192.0.2.4:1024-2047 random",
			want:  Mode{Action: SNAT, AddrMin: a("192.0.2.1"), AddrMax: a("192.0.2.4"), PortMin: 1024, PortMax: 2047, Random: true},
			flags: natmodel.MapIPs | natmodel.ProtoSpecified | natmodel.ProtoRandom},
		{in: "snat to 192.168.1.1/30 persistent", canon: "snat to 192.168.1.0-192.168.1.3 persistent",
			want: Mode{Action: SNAT, AddrMin: a("192.168.1.0"), AddrMax: a("192.168.1.3"), Persistent: true}, flags: natmodel.MapIPs | natmodel.Persistent},
		{in: "snat to 2001:db8::/126", canon: "snat to 2001:db8::-2001:db8::3",
			want: Mode{Action: SNAT, AddrMin: a("2001:db8::"), AddrMax: a("2001:db8::3")}, flags: natmodel.MapIPs},
		{in: "snat to 2001:db8::1", want: Mode{Action: SNAT, AddrMin: a("2001:db8::1"), AddrMax: a("2001:db8::1")}, flags: natmodel.MapIPs},
		{in: "snat to [2001:db8::1]:80", want: Mode{Action: SNAT, AddrMin: a("2001:db8::1"), AddrMax: a("2001:db8::1"), PortMin: 80, PortMax: 80},
			flags: natmodel.MapIPs | natmodel.ProtoSpecified},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if err != nil {
				t.Fatalf("ParseMode(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseMode(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if s := got.String(); s != canon {
				t.Errorf("String() = %q, want %q", s, canon)
			}
			if f := got.Flags(); f != tt.flags {
				t.Errorf("Flags() = %#x, want %#x", f, tt.flags)
			}
		})
	}
}

func TestParseModeErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "empty"},
		{"   ", "empty"},
		{"dnat to 1.2.3.4", `unknown action "dnat": want none, masquerade or snat`},
		{"masquerade to", `missing port range after "to"`},
		{"masquerade to 1.2.3.4", `masquerade takes only ports: want "to :PORT[-PORT]", got "1.2.3.4"`},
		{"masquerade to :2000-1000", "port range 2000-1000: first port is above the last"},
		{"masquerade to :0", `bad port "0": want 1-65535`},
		{"masquerade to :70000", `bad port "70000": want 1-65535`},
		{"masquerade fully_random", `unknown flag "fully_random": want random, fully-random or persistent`},
		{"masquerade random,", `empty flag in "random,"`},
		{"snat 1.2.3.4", `want "snat to ADDR[-ADDR][:PORT[-PORT]]"`},
		{"snat to 1.2.3.4-1.2.3.1", "address range 1.2.3.4-1.2.3.1: first address is above the last"},
		{"none random", `unexpected "random" after none`},
		{"snat to [2001:db8::1", "unclosed '[' in address"},
	}
	for _, tt := range tests {
		_, err := ParseMode(tt.in)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("ParseMode(%q) error = %v, want *ParseError", tt.in, err)
			continue
		}
		if pe.Msg != tt.msg {
			t.Errorf("ParseMode(%q) msg = %q, want %q", tt.in, pe.Msg, tt.msg)
		}
	}
}

func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"none", "masquerade", "masquerade to :1024-1100 random", "snat to 192.0.2.1-192.0.2.9:1-2 fully-random,persistent", "snat to [::1]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMode(s)
		if err != nil {
			return
		}
		// What parses must print to a statement that parses back to the same mode.
		m2, err := ParseMode(m.String())
		if err != nil {
			t.Fatalf("ParseMode(%q).String() = %q does not parse: %v", s, m.String(), err)
		}
		if m2 != m {
			t.Fatalf("round trip of %q: %+v != %+v", s, m2, m)
		}
	})
}

func TestModeRange(t *testing.T) {
	masq := netip.MustParseAddr("198.51.100.1")
	for _, tt := range []struct {
		mode string
		want *natmodel.Range
	}{
		{"none", nil},
		{"masquerade", &natmodel.Range{Flags: natmodel.MapIPs, MinAddr: masq, MaxAddr: masq}},
		{"masquerade to :2000-2063 fully-random", &natmodel.Range{Flags: natmodel.MapIPs | natmodel.ProtoSpecified | natmodel.ProtoRandomFully,
			MinAddr: masq, MaxAddr: masq, MinPort: 2000, MaxPort: 2063}},
		{"snat to 198.51.100.5-198.51.100.7:1024-2047 random,persistent", &natmodel.Range{
			Flags:   natmodel.MapIPs | natmodel.ProtoSpecified | natmodel.ProtoRandom | natmodel.Persistent,
			MinAddr: netip.MustParseAddr("198.51.100.5"), MaxAddr: netip.MustParseAddr("198.51.100.7"), MinPort: 1024, MaxPort: 2047}},
	} {
		m, err := ParseMode(tt.mode)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Range(masq)
		if err != nil {
			t.Fatalf("%s: %v", tt.mode, err)
		}
		if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("%s: Range = %+v, want %+v", tt.mode, got, tt.want)
		}
	}
	var back Mode
	back.SetFlags(natmodel.ProtoRandom | natmodel.Persistent | natmodel.ProtoSpecified)
	if !back.Random || back.FullyRandom || !back.Persistent {
		t.Errorf("SetFlags = %+v", back)
	}
}

func TestTools(t *testing.T) {
	for _, tt := range []struct {
		b             Backend
		fam           Family
		save, restore string
		ok            bool
	}{
		{IptablesLegacy, IPv4, "iptables-legacy-save", "iptables-legacy-restore", true},
		{IptablesLegacy, IPv6, "ip6tables-legacy-save", "ip6tables-legacy-restore", true},
		{IptablesNFT, IPv4, "iptables-nft-save", "iptables-nft-restore", true},
		{IptablesNFT, IPv6, "ip6tables-nft-save", "ip6tables-nft-restore", true},
		{Nftables, IPv4, "", "", false},
		{Iptables, IPv4, "", "", false},
	} {
		save, restore, ok := Tools(tt.b, tt.fam)
		if save != tt.save || restore != tt.restore || ok != tt.ok {
			t.Errorf("Tools(%s, %s) = %s %s %v", tt.b, tt.fam, save, restore, ok)
		}
	}
	if s, r := PlainTools(IPv6); s != "ip6tables-save" || r != "ip6tables-restore" {
		t.Errorf("PlainTools(ip6) = %s %s", s, r)
	}
	for in, want := range map[string]Backend{"nft": Nftables, "nftables": Nftables, "iptables-legacy": IptablesLegacy} {
		if b, err := ParseBackend(in); err != nil || b != want {
			t.Errorf("ParseBackend(%q) = %v %v", in, b, err)
		}
	}
	if _, err := ParseBackend("iptables"); err == nil {
		t.Error("ParseBackend accepted iptables (not installable)")
	}
	if Nftables.Flag() != "nft" || IptablesNFT.Flag() != "iptables-nft" {
		t.Error("Flag is wrong")
	}
}

func TestBinaries(t *testing.T) {
	ports, _ := ParseMode("masquerade to :2000-2063")
	plain, _ := ParseMode("masquerade")
	for _, tt := range []struct {
		b    Backend
		m    Mode
		want string
	}{
		{Nftables, plain, ""},
		{Nftables, ports, "nft"},
		{IptablesLegacy, plain, "iptables-legacy-restore"},
		{IptablesNFT, ports, "iptables-nft-restore"},
	} {
		if got := strings.Join(Binaries(tt.b, []Rule{{Proto: "tcp", Mode: tt.m}}), " "); got != tt.want {
			t.Errorf("Binaries(%s, %s) = %q, want %q", tt.b, tt.m, got, tt.want)
		}
	}
}
