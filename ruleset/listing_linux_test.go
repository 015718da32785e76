//go:build linux

package ruleset

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snatrace/snatrace/netns/netnstest"
)

// listingVariants are the ways people list the nat table.
var listingVariants = [][]string{
	{"-t", "nat", "-nvL"},
	{"-t", "nat", "-L", "-n"},
	{"-t", "nat", "-L", "-n", "-v", "--line-numbers"},
	{"-t", "nat", "-nvxL", "--line-numbers"},
	{"-t", "nat", "-S", "-v"}, // rules with "-c PACKETS BYTES" in them
}

// TestListingAgainstIptables loads every owner's rules (testdata/owners/src)
// into a namespace with the real iptables, prints them the five ways people
// list the nat table, and reads each listing: every NAT rule must come out
// where, as whose and with the flags the iptables-save dump of the same
// rules says.
func TestListingAgainstIptables(t *testing.T) {
	srcs, _ := filepath.Glob("testdata/owners/src/*.rules")
	if len(srcs) < 10 {
		t.Fatalf("%d rule sources", len(srcs))
	}
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src), ".rules")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			ns := netnstest.New(t, "lst")
			backend := headerValue(string(data), "backend")
			netnstest.LoadRules(t, ns, string(data), "iptables-"+backend+"-restore")
			dump, err := Parse(netnstest.Run(t, ns, "", "iptables-"+backend+"-save"), name, FormatAuto)
			if err != nil {
				t.Fatal(err)
			}
			want := natView(dump)
			if want == "" {
				t.Fatal("the dump has no NAT rule")
			}
			for _, v := range listingVariants {
				listing := netnstest.Run(t, ns, "", "iptables-"+backend, v...)
				rs, err := Parse(listing, name+".list", FormatAuto)
				if err != nil {
					t.Fatalf("iptables %v: %v\n%s", v, err, listing)
				}
				got := natView(rs)
				if !strings.Contains(strings.Join(v, " "), "v") {
					// Without -v there are no interfaces: an owner known by
					// them becomes unknown, never another owner; and it says so.
					got, want := unknownOwners(rs, dump)
					if got != want || len(rs.Warnings) == 0 {
						t.Errorf("iptables %v read as\n%s\nthe dump, owners known without interfaces, says\n%s\nwarnings %q", v, got, want, rs.Warnings)
					}
					continue
				}
				if got != want {
					t.Errorf("iptables %v read as\n%s\nthe dump says\n%s\nlisting:\n%s", v, got, want, listing)
				}
				if v[2] == "-S" && len(rs.Rules) == len(dump.Rules) {
					for i := range rs.Rules {
						if rs.Rules[i].Text != dump.Rules[i].Text {
							t.Errorf("iptables %v: rule text %q, the dump's %q", v, rs.Rules[i].Text, dump.Rules[i].Text)
						}
					}
				}
			}
		})
	}
}

// unknownOwners renders both rule sets with each owner the listing lost
// (unknown there) masked in the dump too: the rest must agree.
func unknownOwners(listing, dump *Ruleset) (string, string) {
	if len(listing.Rules) != len(dump.Rules) {
		return natView(listing), natView(dump)
	}
	masked := *dump
	masked.Rules = append([]Rule(nil), dump.Rules...)
	for i := range masked.Rules {
		if listing.Rules[i].Owner == Unknown {
			masked.Rules[i].Owner = Unknown
		}
	}
	return natView(listing), natView(&masked)
}
