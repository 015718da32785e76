package ruleset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/snatrace/snatrace/internal/golden"
)

// summary renders a Ruleset one rule per line, for golden files.
func summary(rs *Ruleset) string {
	var b strings.Builder
	for _, s := range rs.Sources {
		fmt.Fprintf(&b, "source %s %s rules=%d version=%q\n", s.Backend, s.Format, s.Rules, s.Version)
	}
	for _, r := range rs.Rules {
		fmt.Fprintf(&b, "%s %s %s/%s #%d handle=%d hook=%s line=%d owner=%s nat=%q flags_known=%v xt=%v\n\tmatch=%q comment=%q\n\ttext=%q\n",
			r.Backend, r.Family, r.Table, r.Chain, r.Position, r.Handle, r.Hook, r.Line, r.Owner, r.NAT.String(), r.FlagsKnown, r.XT, r.Match, r.Comment, r.Text)
	}
	for _, w := range rs.Warnings {
		fmt.Fprintf(&b, "warning %s\n", w)
	}
	return b.String()
}

func dumps(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.iptables-save", "*.S", "*.nft", "*.nft.json"} {
		m, err := filepath.Glob(filepath.Join("testdata", "owners", pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("found %d owner dumps, want at least 20", len(files))
	}
	return files
}

func TestParseGolden(t *testing.T) {
	for _, f := range dumps(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := Parse(string(data), filepath.Base(f), FormatAuto)
			if err != nil {
				t.Fatal(err)
			}
			got := summary(rs)
			golden := filepath.Join("testdata", "golden", filepath.Base(f)+".golden")
			goldenfile.Check(t, golden, []byte(got))
		})
	}
}

// TestOwners checks the signature table on one realistic dump per owner:
// every NAT rule of the dump belongs to the owner named by the file.
func TestOwners(t *testing.T) {
	tests := []struct {
		file  string
		owner Owner
		rules int
	}{
		{"docker.iptables-save", Docker, 3},
		{"docker.nft", Docker, 3},
		{"docker.nft.json", Docker, 3},
		{"docker-nft.nft", Docker, 2},
		{"docker-nft.nft.json", Docker, 2},
		{"netavark.iptables-save", Netavark, 2},
		{"netavark-nft.nft", Netavark, 2},
		{"libvirt.iptables-save", Libvirt, 3},
		{"libvirt-nft.nft", Libvirt, 3},
		{"kube-proxy.iptables-save", KubeProxy, 1},
		{"kube-proxy.S", KubeProxy, 1},
		{"kube-proxy-ipvs.iptables-save", KubeProxy, 2},
		{"kube-proxy-ipvs.nft.json", KubeProxy, 2},
		{"kube-proxy-nft.nft", KubeProxy, 1},
		{"kube-proxy-nft.nft.json", KubeProxy, 1},
		{"flannel.iptables-save", Flannel, 2},
		{"flannel-nft.nft", Flannel, 2},
		{"calico.iptables-save", Calico, 2},
		{"calico-nft.nft", Calico, 1},
		{"cilium.iptables-save", Cilium, 3},
		{"aws-vpc-cni.iptables-save", AWSVPCCNI, 1},
		{"aws-vpc-cni.nft", AWSVPCCNI, 1},
		{"ip-masq-agent.iptables-save", IPMasqAgent, 1},
		{"weave.iptables-save", Weave, 2},
		{"antrea.iptables-save", Antrea, 1},
		{"kube-router.iptables-save", KubeRouter, 1},
		{"k3s.iptables-save", K3s, 1},
		{"cni.iptables-save", CNI, 2},
		{"firewalld.nft", Firewalld, 1},
		{"firewalld-iptables.iptables-save", Firewalld, 1},
		{"netavark-1.4.iptables-save", Netavark, 2},
		{"libvirt-9.0.iptables-save", Libvirt, 3},
		{"docker-20.10.iptables-save", Docker, 5},
		{"unknown.iptables-save", Unknown, 3},
	}
	covered := map[Owner]bool{}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "owners", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			rs, err := Parse(string(data), tt.file, FormatAuto)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs.Rules) != tt.rules {
				t.Fatalf("got %d NAT rules, want %d:\n%s", len(rs.Rules), tt.rules, summary(rs))
			}
			for _, r := range rs.Rules {
				if r.Owner != tt.owner {
					t.Errorf("%s: owner %s (%s), want %s", r.Text, r.Owner, r.OwnerEvidence, tt.owner)
				}
			}
		})
		covered[tt.owner] = true
	}
	for _, o := range Owners() {
		if !covered[o] {
			t.Errorf("owner %s has no test dump", o)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
		line   int
		msg    string
	}{
		{"garbage", FormatAuto, "hello\n", 0, "unrecognised dump"},
		{"no commit", FormatIptablesSave, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\n", 3, "has no COMMIT"},
		{"undeclared chain", FormatIptablesSave, "*nat\n-A FOO -j MASQUERADE\nCOMMIT\n", 2, "not declared"},
		{"bad to-source", FormatIptablesSave, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j SNAT --to-source 1.2.3.999\nCOMMIT\n", 3, "bad address"},
		{"bad port", FormatIptablesSave, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE --to-ports 0-70000\nCOMMIT\n", 3, "bad port"},
		{"unterminated quote", FormatIptablesSave, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -m comment --comment \"x -j MASQUERADE\nCOMMIT\n", 3, "unterminated quote"},
		{"unknown option", FormatIptablesSave, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE --fully\nCOMMIT\n", 3, "unknown MASQUERADE option"},
		{"snat without address", FormatIptablesS, "-P POSTROUTING ACCEPT\n-A POSTROUTING -j SNAT\n", 2, "without --to-source"},
		{"nft open table", FormatNft, "table ip nat {\n\tchain POSTROUTING {\n\t\tmasquerade\n\t}\n", 4, "missing '}'"},
		{"nft bad snat", FormatNft, "table ip nat {\n\tchain p {\n\t\tsnat to 10.0.0.300\n\t}\n}\n", 3, "bad address"},
		{"nft junk", FormatNft, "table ip nat {\n\tbogus thing\n}\n", 2, "unexpected"},
		{"json syntax", FormatNftJSON, "{\"nftables\": [\n{\"rule\": \n}\n]}", 2, "bad JSON"},
		{"json bad flag", FormatNftJSON, "{\"nftables\": [\n{\"chain\": {\"family\": \"ip\", \"table\": \"t\", \"name\": \"c\"}},\n{\"rule\": {\"family\": \"ip\", \"table\": \"t\", \"chain\": \"c\", \"expr\": [{\"masquerade\": {\"flags\": \"sometimes\"}}]}}\n]}", 3, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in, "dump", tt.format)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got line %d %q, want line %d containing %q", pe.Line, err, tt.line, tt.msg)
			}
		})
	}
}

// TestIptablesSFamily: `ip6tables -t nat -S` has no header naming its
// tool; one IPv6 address makes every rule of the dump IPv6, including a
// rule that names none (it was read as IPv4, so a plan would have aimed at
// the IPv4 table).
func TestIptablesSFamily(t *testing.T) {
	dump := "-P POSTROUTING ACCEPT\n" +
		"-A POSTROUTING -s fd00:1::/64 -j SNAT --to-source 2001:db8::7\n" +
		"-A POSTROUTING -o eth1 -j MASQUERADE\n"
	rs, err := ParseIptablesSave(dump, "ip6tables-S")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) != 2 {
		t.Fatalf("%d rules, want 2", len(rs.Rules))
	}
	for _, r := range rs.Rules {
		if r.Family != "ip6" {
			t.Errorf("rule %d (%s): family %s, want ip6", r.Position, r.Text, r.Family)
		}
	}
	v4, err := ParseIptablesSave("-P POSTROUTING ACCEPT\n-A POSTROUTING -o eth1 -j MASQUERADE\n", "iptables-S")
	if err != nil || len(v4.Rules) != 1 || v4.Rules[0].Family != "ip" {
		t.Errorf("an -S dump with no address: %v, %+v; want one ip rule", err, v4)
	}
}
