//go:build linux

package natrule

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/snatrace/snatrace/internal/testenv"
	"github.com/snatrace/snatrace/natmodel"
	"github.com/snatrace/snatrace/netns"
	"github.com/snatrace/snatrace/netns/netnstest"
	"github.com/snatrace/snatrace/nftnl"
	"golang.org/x/sys/unix"
)

func testNS(t *testing.T) *netns.NS { return netnstest.New(t, "nr") }

func needBinary(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		testenv.Skip(t, "needs %s (.ci/run installs it)", name)
	}
}

// TestInstallDump installs each mode through each backend in a fresh
// namespace and reads it back with the backend's own userspace tool.
func TestInstallDump(t *testing.T) {
	src := netip.MustParsePrefix("10.98.0.0/16")
	tests := []struct {
		mode     string
		nft      string // the rule as `nft list table ip snatrace` prints it
		iptables string // the rule as iptables-save prints it ("" = not expressible)
	}{
		{"masquerade", `masquerade`, `-j MASQUERADE`},
		{"masquerade random", `masquerade random`, `-j MASQUERADE --random`},
		{"masquerade fully-random", `masquerade fully-random`, `-j MASQUERADE --random-fully`},
		{"masquerade random,fully-random", `masquerade random,fully-random`, `-j MASQUERADE --random --random-fully`},
		{"masquerade to :1024-1100", `masquerade to :1024-1100`, `-j MASQUERADE --to-ports 1024-1100`},
		// google/nftables cannot marshal this one: the nft backend uses nft -f.
		{"masquerade to :1024-1100 fully-random", `masquerade to :1024-1100 fully-random`, `-j MASQUERADE --to-ports 1024-1100 --random-fully`},
		{"snat to 198.51.100.1", `snat to 198.51.100.1`, `-j SNAT --to-source 198.51.100.1`},
		{"snat to 198.51.100.1-198.51.100.4:2000-2100 fully-random,persistent",
			`snat to 198.51.100.1-198.51.100.4:2000-2100 fully-random,persistent`,
			`-j SNAT --to-source 198.51.100.1-198.51.100.4:2000-2100 --random-fully --persistent`},
	}
	for _, backend := range Backends {
		t.Run(string(backend), func(t *testing.T) {
			switch backend {
			case Nftables:
				needBinary(t, "nft")
			case IptablesNFT:
				needBinary(t, "iptables-nft-restore")
			case IptablesLegacy:
				needBinary(t, "iptables-legacy-restore")
			}
			ns := testNS(t)
			ctx := context.Background()
			for _, tt := range tests {
				m, err := ParseMode(tt.mode)
				if err != nil {
					t.Fatal(err)
				}
				if err := Install(ctx, ns, backend, []Rule{{Src: src, OutIface: "up0", Proto: "tcp", Mode: m}}); err != nil {
					t.Fatalf("Install(%q): %v", tt.mode, err)
				}
				got, err := Dump(ctx, ns, backend)
				if err != nil {
					t.Fatal(err)
				}
				want := `-A POSTROUTING -s 10.98.0.0/16 -o up0 -p tcp ` + tt.iptables
				if backend == Nftables {
					want = `ip saddr 10.98.0.0/16 oifname "up0" meta l4proto tcp ` + tt.nft
				}
				if n := strings.Count(got, want); n != 1 {
					t.Errorf("%s: %q: dump has %d copies of %q:\n%s", backend, tt.mode, n, want, got)
				}
			}
			if err := Remove(ctx, ns, backend); err != nil {
				t.Fatal(err)
			}
			got, err := Dump(ctx, ns, backend)
			if backend == Nftables {
				if err == nil {
					t.Errorf("table still there after Remove:\n%s", got)
				}
			} else if strings.Contains(got, "-A POSTROUTING") {
				t.Errorf("rules left after Remove:\n%s", got)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	m, _ := ParseMode("masquerade persistent")
	if _, err := (Rule{Mode: m}).IptablesArgs(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("iptables masquerade persistent: %v, want ErrUnsupported", err)
	}
	m, _ = ParseMode("masquerade to :1024-1100 fully-random")
	if _, err := nftExprs(Rule{Mode: m, Proto: "tcp"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("nft masquerade ports+flags: %v, want ErrUnsupported", err)
	}
	if !needsNFTText([]Rule{{Mode: m}}) {
		t.Error("masquerade ports+flags does not take the nft -f path")
	}
}

func TestIptablesRestore(t *testing.T) {
	m, _ := ParseMode("snat to 192.0.2.1:1024-2047 random,fully-random")
	doc, err := IptablesRestore([]Rule{{Src: netip.MustParsePrefix("10.0.0.0/8"), OutIface: "eth0", Mode: m}, {Mode: Mode{}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
		"-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j SNAT --to-source 192.0.2.1:1024-2047 --random --random-fully\nCOMMIT\n"
	if doc != want {
		t.Errorf("IptablesRestore =\n%s\nwant\n%s", doc, want)
	}
}

func TestNFTScript(t *testing.T) {
	m, _ := ParseMode("masquerade to :1024-1100 random,fully-random")
	got, err := NFTScript([]Rule{{Src: netip.MustParsePrefix("10.98.0.0/16"), OutIface: "up0", Proto: "tcp", Mode: m}, {}})
	if err != nil {
		t.Fatal(err)
	}
	want := "table ip snatrace\ndelete table ip snatrace\ntable ip snatrace {\n\tchain postrouting {\n" +
		"\t\ttype nat hook postrouting priority srcnat; policy accept;\n" +
		"\t\tip saddr 10.98.0.0/16 oifname \"up0\" meta l4proto tcp masquerade to :1024-1100 random,fully-random\n\t}\n}\n"
	if got != want {
		t.Errorf("NFTScript =\n%s\nwant\n%s", got, want)
	}
	if _, err := NFTScript([]Rule{{Mode: m}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ports without a protocol: %v, want ErrUnsupported", err)
	}
}

// TestInstallFlagsReachKernel installs each nft mode and reads the NAT flags
// word back from the kernel over netlink: the flags the kernel acts on must
// be exactly the mode's, PROTO_SPECIFIED included (google/nftables leaves
// it out of masquerade with ports, and then the kernel ignores the range
// while nft still prints it).
func TestInstallFlagsReachKernel(t *testing.T) {
	needBinary(t, "nft")
	ns := testNS(t)
	ctx := context.Background()
	for _, mode := range []string{"masquerade", "masquerade fully-random", "masquerade to :2000-2063",
		"masquerade to :2000-2063 random", "snat to 198.51.100.1", "snat to 198.51.100.1-198.51.100.3:2000-2100 fully-random,persistent"} {
		m, err := ParseMode(mode)
		if err != nil {
			t.Fatal(err)
		}
		rules := []Rule{{Src: netip.MustParsePrefix("10.98.0.0/16"), OutIface: "up0", Proto: "tcp", Mode: m}}
		if err := Install(ctx, ns, Nftables, rules); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		got, err := kernelNATFlags(ns)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if got != m.Flags() {
			t.Errorf("%s: the kernel holds flags %#x, want %#x", mode, got, m.Flags())
		}
	}
}

// kernelNATFlags returns the flags word of the one NAT expression in table
// ip snatrace, as the kernel dumps it.
func kernelNATFlags(ns *netns.NS) (natmodel.Flags, error) {
	c, err := nftnl.Dial(nftnl.WithNetNS(ns))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msgs, _, err := c.Dump(unix.NFT_MSG_GETRULE, unix.NFPROTO_IPV4, []netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")}})
	if err != nil || len(msgs) != 1 {
		return 0, fmt.Errorf("dumping table ip %s: %d rules, %v", TableName, len(msgs), err)
	}
	var flags natmodel.Flags
	err = nftnl.Walk(msgs[0].Data[4:], func(typ uint16, v []byte) error {
		if typ != unix.NFTA_RULE_EXPRESSIONS {
			return nil
		}
		return nftnl.Walk(v, func(_ uint16, elem []byte) error {
			var name string
			var data []byte
			nftnl.Walk(elem, func(typ uint16, v []byte) error {
				switch typ {
				case unix.NFTA_EXPR_NAME:
					name = nftnl.CString(v)
				case unix.NFTA_EXPR_DATA:
					data = v
				}
				return nil
			})
			want := map[string]uint16{"masq": unix.NFTA_MASQ_FLAGS, "nat": unix.NFTA_NAT_FLAGS}[name]
			if want == 0 {
				return nil
			}
			return nftnl.Walk(data, func(typ uint16, v []byte) error {
				if typ == want && len(v) == 4 {
					flags = natmodel.Flags(binary.BigEndian.Uint32(v))
				}
				return nil
			})
		})
	})
	return flags, err
}
