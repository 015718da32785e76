//go:build linux

package fix

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/snatrace/snatrace/natrule"
	"github.com/snatrace/snatrace/ruleset"
	"github.com/snatrace/snatrace/tool"
)

// versions is a Fake that answers --version of each restore tool it is
// asked about, any number of times (failing the first fail runs), and
// counts the runs of each tool. It may be run from several goroutines.
type versions struct {
	tool.Fake
	version string
	fail    int
	mu      sync.Mutex
	asked   map[string]int
}

func (v *versions) Run(_ context.Context, c tool.Cmd) ([]byte, error) {
	if len(c.Args) != 1 || c.Args[0] != "--version" {
		return nil, errors.New("not in this fake: " + c.String())
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.asked == nil {
		v.asked = map[string]int{}
	}
	v.asked[c.Name]++
	if v.fail > 0 {
		v.fail--
		return nil, errors.New("killed")
	}
	return []byte(c.Name + " " + v.version + "\n"), nil
}

func TestTools(t *testing.T) {
	all := []string{"iptables-legacy-save", "iptables-legacy-restore", "iptables-nft-save", "iptables-nft-restore",
		"ip6tables-legacy-save", "ip6tables-legacy-restore", "iptables-save", "iptables-restore"}
	old := []string{"iptables-save", "iptables-restore"}
	tests := []struct {
		name                string
		have                []string
		version             string
		backend             ruleset.Backend
		fam                 ruleset.Family
		save, restore, miss string
	}{
		{"legacy", all, "v1.8.9 (legacy)", natrule.IptablesLegacy, "ip", "iptables-legacy-save", "iptables-legacy-restore", ""},
		{"legacy ip6", all, "v1.8.9 (legacy)", natrule.IptablesLegacy, "ip6", "ip6tables-legacy-save", "ip6tables-legacy-restore", ""},
		{"nft", all, "v1.8.9 (nf_tables)", natrule.IptablesNFT, "ip", "iptables-nft-save", "iptables-nft-restore", ""},
		// iptables 1.6: only the plain names, which are legacy.
		{"old iptables", old, "v1.6.1", natrule.IptablesLegacy, "ip", "iptables-save", "iptables-restore", ""},
		// Plain names that are the nf_tables flavour cannot change legacy rules.
		{"plain is nft", old, "v1.8.9 (nf_tables)", natrule.IptablesLegacy, "ip", "", "", "iptables-legacy-save"},
		{"no restore", []string{"iptables-legacy-save"}, "", natrule.IptablesLegacy, "ip", "", "", "iptables-legacy-restore"},
		{"no nft restore", []string{"iptables-nft-save", "iptables-restore"}, "v1.8.9 (legacy)", natrule.IptablesNFT, "ip", "", "", "iptables-nft-restore"},
	}
	for _, tt := range tests {
		f := New(Config{Runner: &versions{Fake: tool.Fake{Installed: tt.have}, version: tt.version}})
		save, restore, err := f.tools(context.Background(), tt.backend, tt.fam)
		var mb *tool.MissingError
		switch {
		case tt.miss != "":
			if !errors.As(err, &mb) || mb.Binary != tt.miss || mb.Package != "iptables" {
				t.Errorf("%s: error %v, want %s missing", tt.name, err, tt.miss)
			}
		case err != nil || save != tt.save || restore != tt.restore:
			t.Errorf("%s: %s %s %v, want %s %s", tt.name, save, restore, err, tt.save, tt.restore)
		}
	}
}

func TestCanHoldLock(t *testing.T) {
	have := []string{"iptables-legacy-save", "iptables-legacy-restore"}
	for _, tt := range []struct {
		version string
		want    bool
	}{
		{"v1.8.9 (legacy)", true},
		{"v1.8.6 (legacy)", true},
		{"v1.8.5 (legacy)", false}, // does not honour XTABLES_LOCKFILE: would wait for our lock
		{"v1.6.1", false},
		{"unknown", false},
	} {
		f := New(Config{Runner: &versions{Fake: tool.Fake{Installed: have}, version: tt.version}})
		if got := f.canHoldLock(context.Background(), []ruleset.Family{"ip"}); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.version, got, tt.want)
		}
	}
	f := New(Config{Runner: &versions{Fake: tool.Fake{Installed: have}, version: "v1.8.9"}})
	if f.canHoldLock(context.Background(), nil) {
		t.Error("no legacy change: no lock")
	}
}

// TestCanHoldLockAsksOnce: a Fixer asks each family's restore tool for its
// version once, however often and in whatever combination it needs the
// answer; a run that printed no version is asked again.
func TestCanHoldLockAsksOnce(t *testing.T) {
	ctx := context.Background()
	have := []string{"iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy-restore"}
	v := &versions{Fake: tool.Fake{Installed: have}, version: "v1.8.9 (legacy)"}
	f := New(Config{Runner: v})
	for _, fams := range [][]ruleset.Family{{natrule.IPv4}, {natrule.IPv4, natrule.IPv6}, {natrule.IPv6, natrule.IPv4}} {
		if !f.canHoldLock(ctx, fams) {
			t.Errorf("%v: cannot hold the lock with 1.8.9", fams)
		}
	}
	if v.asked["iptables-legacy-restore"] != 1 || v.asked["ip6tables-legacy-restore"] != 1 {
		t.Errorf("versions asked %v, want each restore tool once", v.asked)
	}
	v = &versions{Fake: tool.Fake{Installed: have}, version: "v1.8.9 (legacy)", fail: 1}
	f = New(Config{Runner: v})
	if f.canHoldLock(ctx, []ruleset.Family{natrule.IPv4}) {
		t.Error("a tool whose version run failed counts as honouring XTABLES_LOCKFILE")
	}
	if !f.canHoldLock(ctx, []ruleset.Family{natrule.IPv4}) || v.asked["iptables-legacy-restore"] != 2 {
		t.Errorf("after a failed run: asked %v, want the tool asked again and found to honour it", v.asked)
	}
}
